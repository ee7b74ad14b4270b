package identify

import (
	"context"
	"testing"
	"time"

	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/keyspace"
)

// TestWaitStatsCountTheWaits: every bucket taken is one wait, and the
// time spent in Wait adds up.
func TestWaitStatsCountTheWaits(t *testing.T) {
	m, rdb := testredis.Mini(t)
	l := NewLimiter(rdb, keyspace.MustNew("w"), 1, WithWindow(50*time.Millisecond), WithMargin(0))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := l.Wait(ctx, 0); err != nil {
		t.Fatal(err)
	}
	l.Unlock(0)
	m.FastForward(l.Hold()) // miniredis expires keys only when told
	if err := l.Wait(ctx, 1); err != nil {
		t.Fatal(err)
	}
	st := l.WaitStats()
	if st.Waits != 2 || st.Seconds <= 0 {
		t.Errorf("WaitStats = %+v, want 2 waits and some time", st)
	}
}
