package identify

import (
	"testing"

	"github.com/disgoorg/disgo/gateway"
)

// The package does not import disgo (so that megane-cli does not link it);
// the compile-time check that Limiter still satisfies disgo's interface lives
// here instead.
var _ gateway.IdentifyRateLimiter = (*Limiter)(nil)

func TestBucketMatchesDisgo(t *testing.T) {
	for _, mc := range []int{1, 2, 16} {
		l := &Limiter{maxConcurrency: mc}
		for shard := range 40 {
			if got, want := l.Bucket(shard), gateway.MaxConcurrencyKey(shard, mc); got != want {
				t.Fatalf("Bucket(%d) with max_concurrency %d = %d, disgo says %d", shard, mc, got, want)
			}
		}
	}
}
