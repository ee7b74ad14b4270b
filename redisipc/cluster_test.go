package redisipc

import (
	"context"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/internal/testredis"
)

// fixedPicker makes a cluster client send every keyless command (PUBLISH)
// to master i.
type fixedPicker int

func (p fixedPicker) Next(total int) int { return int(p) % total }

// On a Redis Cluster a node subscribes to the broadcast channel through
// one master, while a PUBLISH (keyless) goes to whichever master the
// client picks: a gather must be answered whichever master carried it.
// Each caller here publishes through one master, and every master's
// PUBLISH count must grow.
func TestBroadcastThroughEveryMaster(t *testing.T) {
	testredis.EachBackend(t, func(t *testing.T) {
		rdb, ks := testredis.Real(t)
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		realNode(t, rdb, ks, "cluster:7")
		callers := []redis.UniversalClient{rdb}
		var masters []*redis.Client
		if cc, ok := rdb.(*redis.ClusterClient); ok {
			var mu sync.Mutex
			if err := cc.ForEachMaster(ctx, func(_ context.Context, m *redis.Client) error {
				mu.Lock()
				masters = append(masters, m)
				mu.Unlock()
				return nil
			}); err != nil {
				t.Fatal(err)
			}
			callers = nil
			for i := range masters {
				o := cc.Options()
				o2 := *o
				o2.ShardPicker = fixedPicker(i)
				c := redis.NewClusterClient(&o2)
				t.Cleanup(func() { _ = c.Close() })
				callers = append(callers, c)
			}
		}
		before := publishes(ctx, t, masters)
		for i, c := range callers {
			caller := realNode(t, c, ks, "cli:caller-"+strconv.Itoa(i))
			g, err := caller.Gather(ctx, "cluster:7", OpPing, nil)
			if err != nil || len(g.Answers) != 1 || len(g.Missing) != 0 {
				t.Errorf("gather through caller %d: %+v, %v; want one answer", i, g, err)
			}
		}
		after := publishes(ctx, t, masters)
		for i := range masters {
			if after[i] <= before[i] {
				t.Errorf("master %s carried no PUBLISH (%d → %d)", masters[i].Options().Addr, before[i], after[i])
			}
		}
	})
}

// publishes reads each master's PUBLISH count (INFO commandstats).
func publishes(ctx context.Context, t *testing.T, masters []*redis.Client) []int64 {
	t.Helper()
	out := make([]int64, len(masters))
	for i, m := range masters {
		info, err := m.Info(ctx, "commandstats").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(info, "\n") {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "cmdstat_publish:calls="); ok {
				n, _, _ := strings.Cut(rest, ",")
				out[i], _ = strconv.ParseInt(n, 10, 64)
			}
		}
	}
	return out
}
