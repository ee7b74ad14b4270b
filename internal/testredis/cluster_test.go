package testredis

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// A cluster of StartCluster serves every slot from its first command, its
// nodes count the CROSSSLOT replies they send, and EachBackend hands it to
// the test's helpers.
func TestStartCluster(t *testing.T) {
	start := time.Now()
	c := StartCluster(t, ClusterOptions{})
	t.Logf("3-master cluster formed in %s", time.Since(start).Round(time.Millisecond))
	ctx := context.Background()
	rdb, err := NewClient(c.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()

	t.Run("EverySlotServed", func(t *testing.T) {
		cc, ok := rdb.(*redis.ClusterClient)
		if !ok {
			t.Fatalf("NewClient(%s) is a %T, want a cluster client", c.URL(), rdb)
		}
		var masters atomic.Int32 // ForEachMaster runs fn on every master at once
		if err := cc.ForEachMaster(ctx, func(context.Context, *redis.Client) error { masters.Add(1); return nil }); err != nil {
			t.Fatal(err)
		}
		if masters := masters.Load(); masters != 3 {
			t.Fatalf("%d masters, want 3", masters)
		}
		for i := range 200 {
			if err := rdb.Set(ctx, fmt.Sprintf("k%d", i), i, 0).Err(); err != nil {
				t.Fatalf("SET k%d: %v", i, err)
			}
		}
		for _, addr := range c.Addrs() {
			node := c.NodeClient(addr)
			n, err := node.DBSize(ctx).Result()
			_ = node.Close()
			if err != nil || n == 0 {
				t.Errorf("node %s holds %d keys (%v), want some of the 200", addr, n, err)
			}
		}
	})

	t.Run("CrossSlotCounted", func(t *testing.T) {
		before, err := c.CrossSlotErrors(ctx)
		if err != nil {
			t.Fatal(err)
		}
		err = rdb.Do(ctx, "MSET", "{a}x", "1", "{b}x", "2").Err()
		if err == nil || !strings.HasPrefix(err.Error(), "CROSSSLOT") {
			t.Fatalf("MSET across slots: %v, want CROSSSLOT", err)
		}
		after, err := c.CrossSlotErrors(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if after != before+1 {
			t.Errorf("CROSSSLOT count %d → %d, want one more", before, after)
		}
		if n, err := CrossSlotErrors(ctx, c.Addrs()); err != nil || n != after {
			t.Errorf("CrossSlotErrors(addrs) = %d, %v; want %d", n, err, after)
		}
	})

	t.Run("EachBackendRoutes", func(t *testing.T) {
		srv := StartServer(t, ServerOptions{})
		t.Setenv(EnvURL, srv.URL())
		t.Setenv(EnvClusterURL, c.URL())
		got := map[string]string{}
		EachBackend(t, func(t *testing.T) {
			t.Run("nested", func(t *testing.T) {
				got[t.Name()] = URL(t)
				rdb, ks := Real(t)
				_, isCluster := rdb.(*redis.ClusterClient)
				if isCluster != OnCluster(t) {
					t.Errorf("Real gave a %T, OnCluster says %v", rdb, OnCluster(t))
				}
				if err := rdb.Set(ctx, ks.Base()+"x", 1, 0).Err(); err != nil {
					t.Error(err)
				}
			})
		})
		want := map[string]string{
			t.Name() + "/redis/nested":   srv.URL(),
			t.Name() + "/cluster/nested": c.URL(),
		}
		for name, u := range want {
			if got[name] != u {
				t.Errorf("URL in %s = %q, want %q", name, got[name], u)
			}
		}
		if u := URL(t); u != srv.URL() {
			t.Errorf("URL outside EachBackend = %q, want the server's %q", u, srv.URL())
		}
	})
}
