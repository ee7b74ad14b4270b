package inspect

import (
	"context"
	"slices"
	"testing"

	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/keyspace"
)

// Namespaces finds every bot on a real Redis, and on a Redis Cluster on
// every master: thirty namespaces' markers spread over all of them, and the
// masters are scanned at once (a race here crashed megane-cli namespaces).
func TestNamespacesOnRealRedis(t *testing.T) {
	testredis.EachBackend(t, func(t *testing.T) {
		rdb, first := testredis.Real(t)
		ctx := context.Background()
		var want []string
		for i := range 30 {
			ks := first
			if i > 0 {
				ks = keyspace.MustNew(testredis.Namespace(t))
				t.Cleanup(func() { testredis.Purge(context.Background(), rdb, ks) })
			}
			marker := ks.Launcher()
			if i%2 == 1 {
				marker = ks.Gateway() // a start that failed early
			}
			if err := rdb.HSet(ctx, marker, "status", "stopped").Err(); err != nil {
				t.Fatal(err)
			}
			want = append(want, ks.Namespace())
		}
		got, err := Namespaces(ctx, rdb)
		if err != nil {
			t.Fatal(err)
		}
		for _, ns := range want {
			if !slices.Contains(got, ns) {
				t.Errorf("Namespaces lacks %s (found %d)", ns, len(got))
			}
		}
	})
}
