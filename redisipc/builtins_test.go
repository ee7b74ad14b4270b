package redisipc

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/keyspace"
)

// Ping and stats answers are typed and versioned, and a process's own
// figures arrive in Cluster and Fields.
func TestBuiltinRepliesAreTyped(t *testing.T) {
	_, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("unit")
	srv := newNode(t, fastOpts(rdb, ks, "cluster:2"))
	srv.SetStats(func(_ context.Context, r *StatsReply) {
		r.Cluster = &ClusterStats{ID: 2, Shards: []int{4, 5}, ShardCount: 6, OwnerFetches: 3}
		r.Fields = map[string]any{"guilds": 12, "region": "eu"}
	})
	cli := newNode(t, fastOpts(rdb, ks, "cli:a"))
	ctx := ctxT(t, 5*time.Second)

	pong, err := cli.Ping(ctx, "cluster:2")
	if err != nil || pong != (PingReply{Version: PingVersion, Addr: "cluster:2", Instance: srv.Instance()}) {
		t.Fatalf("Ping = %+v, %v", pong, err)
	}
	st, err := cli.StatsOf(ctx, "cluster:2")
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != StatsVersion || st.Addr != "cluster:2" || st.Instance != srv.Instance() || st.Goroutines <= 0 || st.HeapAlloc == 0 {
		t.Errorf("StatsOf = %+v", st)
	}
	if c := st.Cluster; c == nil || c.ID != 2 || len(c.Shards) != 2 || c.ShardCount != 6 || c.OwnerFetches != 3 || c.Cache != nil {
		t.Errorf("Cluster = %+v", st.Cluster)
	}
	if st.Fields["guilds"] != 12.0 || st.Fields["region"] != "eu" {
		t.Errorf("Fields = %#v", st.Fields)
	}

	// The wire names, as a reader in another language sees them.
	raw, err := cli.Call(ctx, "cluster:2", OpStats, nil)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"version", "addr", "instance", "handled", "failed", "dropped", "dead_letters", "in_flight", "uptime_seconds", "goroutines", "heap_alloc", "cluster", "fields"} {
		if _, ok := m[k]; !ok {
			t.Errorf("$stats answer lacks %q: %s", k, raw)
		}
	}
	if c, _ := m["cluster"].(map[string]any); c["owner_fetches"] != 3.0 {
		t.Errorf("cluster.owner_fetches in %s", raw)
	}

	// A node without a SetStats function answers its counters alone.
	if st, err := cli.StatsOf(ctx, "cli:a"); err != nil || st.Cluster != nil || st.Fields != nil {
		t.Errorf("StatsOf a plain node = %+v, %v", st, err)
	}
}
