package inspect

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/identify"
	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/redisipc"
	"github.com/megane-go/megane/sessions"
)

func TestOverviewOfAnEmptyNamespace(t *testing.T) {
	_, rdb := testredis.Mini(t)
	ov, err := New(rdb, keyspace.MustNew("none")).Overview(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if ov.Namespace != "none" || ov.ShardCount != 0 || len(ov.Clusters) != 0 || len(ov.Shards) != 0 || ov.Launcher != nil {
		t.Errorf("overview of nothing = %+v", ov)
	}
}

func TestOverviewReadsTheLayout(t *testing.T) {
	_, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("bot")
	ctx := context.Background()
	if err := identify.SaveGatewayInfo(ctx, rdb, ks, identify.GatewayInfo{Shards: 3, MaxConcurrency: 2, Total: 1000, Remaining: 7}); err != nil {
		t.Fatal(err)
	}
	// Cluster 2 is announced by "clusters" but owns no shard yet.
	rdb.HSet(ctx, ks.ShardMap(), "shard_count", 3, "clusters", 3, "0", 0, "1", 0, "2", 1)
	rdb.HSet(ctx, ks.Cluster(1), "status", "ready", "pid", 9)
	rdb.Set(ctx, ks.ClusterHeartbeat(1), "x", time.Minute)
	rdb.HSet(ctx, ks.ShardStatus(1), "status", "resuming", "latency_ms", 12)
	rdb.HSet(ctx, ks.Launcher(), "pid", 1, "status", "running")
	if err := sessions.Save(ctx, rdb, ks, 1, sessions.State{SessionID: "s1", Sequence: 5, ResumeURL: "wss://r"}); err != nil {
		t.Fatal(err)
	}

	ov, err := New(rdb, ks).Overview(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ov.Gateway.MaxConcurrency != 2 || ov.Gateway.Remaining != 7 || ov.ShardCount != 3 || ov.Launcher == nil || ov.Launcher.Status != "running" {
		t.Errorf("gateway/launcher = %+v / %v", ov.Gateway, ov.Launcher)
	}
	if len(ov.Clusters) != 3 {
		t.Fatalf("clusters = %+v, want 3 (one announced without shards)", ov.Clusters)
	}
	if c := ov.Clusters[0]; c.Alive || len(c.Shards) != 2 || c.Shards[0] != 0 || c.Shards[1] != 1 {
		t.Errorf("cluster 0 = %+v", c)
	}
	if c := ov.Clusters[1]; !c.Alive || c.Status != "ready" || len(c.Shards) != 1 {
		t.Errorf("cluster 1 = %+v", c)
	}
	if c := ov.Clusters[2]; c.Alive || len(c.Shards) != 0 {
		t.Errorf("cluster 2 = %+v", c)
	}
	s := ov.Shards[1]
	if s.Cluster != 0 || s.Status != "resuming" || s.LatencyMS != 12 || s.Session.SessionID != "s1" || s.Session.Sequence != 5 {
		t.Errorf("shard 1 = %+v", s)
	}
}

func TestNamespacesAndDeadRedis(t *testing.T) {
	m, rdb := testredis.Mini(t)
	ctx := context.Background()
	for _, ns := range []string{"b", "a"} {
		rdb.HSet(ctx, keyspace.MustNew(ns).Launcher(), "pid", 1)
	}
	rdb.HSet(ctx, keyspace.MustNew("c").Gateway(), "shards", 1)
	got, err := Namespaces(ctx, rdb)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 3 || got[0] != "a" || got[1] != "b" || got[2] != "c" {
		t.Errorf("Namespaces = %v", got)
	}
	m.Close()
	if _, err := New(rdb, keyspace.MustNew("a")).Overview(ctx); err == nil {
		t.Error("Overview against a dead Redis succeeded")
	} else if errors.Is(err, context.Canceled) {
		t.Errorf("unexpected error kind: %v", err)
	}
}

func TestAge(t *testing.T) {
	now := time.UnixMilli(10_000)
	if got := Age(map[string]string{"t": "4000"}, "t", now); got != "6s" {
		t.Errorf("Age = %q", got)
	}
	if got := Age(map[string]string{}, "t", now); got != "-" {
		t.Errorf("Age of a missing field = %q", got)
	}
}

// A launcher start that failed early used to leave a namespace (gateway
// info, shard map) that made every tool refuse to guess. Leftovers are
// passed over for the running bot, or for the one that ran.
func TestDefaultNamespaceSkipsLeftovers(t *testing.T) {
	ghost := func(ctx context.Context, rdb redis.UniversalClient, ns string) {
		ks := keyspace.MustNew(ns)
		rdb.HSet(ctx, ks.Gateway(), "shards", 1)
		rdb.HSet(ctx, ks.ShardMap(), "shard_count", 1, "0", 0)
	}
	ran := func(ctx context.Context, rdb redis.UniversalClient, ns string) {
		ghost(ctx, rdb, ns)
		rdb.HSet(ctx, keyspace.MustNew(ns).Launcher(), "status", "stopped", "pid", 1)
	}
	for _, tt := range []struct {
		name    string
		stopped []string // launcher ran and stopped
		ghosts  []string // starts that failed early
		live    []string // a cluster node is registered
		want    string
		others  int
		err     error
	}{
		{name: "nothing", err: ErrNoNamespace},
		{name: "one ghost", ghosts: []string{"g"}, want: "g"},
		{name: "stopped and ghosts", stopped: []string{"bot"}, ghosts: []string{"a", "z"}, want: "bot", others: 2},
		{name: "live and stopped", stopped: []string{"old"}, live: []string{"bot"}, ghosts: []string{"a"}, want: "bot", others: 2},
		{name: "two live", live: []string{"a", "b"}, err: ErrAmbiguousNamespace},
		{name: "two stopped", stopped: []string{"a", "b"}, ghosts: []string{"c"}, err: ErrAmbiguousNamespace},
		{name: "two ghosts", ghosts: []string{"a", "b"}, err: ErrAmbiguousNamespace},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, rdb := testredis.Mini(t)
			ctx := context.Background()
			for _, ns := range tt.stopped {
				ran(ctx, rdb, ns)
			}
			for _, ns := range tt.ghosts {
				ghost(ctx, rdb, ns)
			}
			for _, ns := range tt.live {
				ran(ctx, rdb, ns)
				n, err := redisipc.New(ctx, redisipc.Options{Redis: rdb, Keys: keyspace.MustNew(ns), Addr: "cluster:0"})
				if err != nil {
					t.Fatal(err)
				}
				t.Cleanup(func() { _ = n.Close(context.Background()) })
			}
			got, others, err := DefaultNamespace(ctx, rdb)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Fatalf("DefaultNamespace = %q, %v; want %v", got, err, tt.err)
				}
				return
			}
			if err != nil || got != tt.want || len(others) != tt.others {
				t.Fatalf("DefaultNamespace = %q, %v, %v; want %q and %d others", got, others, err, tt.want, tt.others)
			}
		})
	}
}
