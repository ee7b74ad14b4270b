package launcher

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/megane-go/megane/discordtest"
	"github.com/megane-go/megane/identify"
	"github.com/megane-go/megane/inspect"
	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/keyspace"
)

// startOnce runs the launcher's start against rdb, and its cleanups, the
// way runLauncher does.
func startOnce(t *testing.T, cfg Config) error {
	t.Helper()
	l, err := newFromEnv(cfg, lookupMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var cleanups []func()
	err = l.start(ctx, &cleanups)
	for _, f := range slices.Backward(cleanups) {
		f()
	}
	return err
}

// A start that failed after writing the gateway info and the shard map
// (here: too few session starts left) used to leave them, a namespace of a
// bot that never ran, and megane-cli status then refused to guess which
// bot was meant. A namespace no launcher ran in is left as it was found; one
// a launcher ran in keeps its records.
func TestFailedStartLeavesNoNamespace(t *testing.T) {
	srv, err := discordtest.NewServer(discordtest.Options{Shards: 2, MaxConcurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	_, rdb := testredis.Mini(t)
	cfg := Config{Worker: nopWorker{}, Token: srv.Token(), RESTURL: srv.RESTURL(), Redis: rdb,
		Namespace: "fresh", Clusters: 1, IdentifyReserve: 100_000}

	if err := startOnce(t, cfg); !errors.Is(err, identify.ErrSessionStartLimit) {
		t.Fatalf("start = %v, want the session budget refusal", err)
	}
	ctx := context.Background()
	if found, err := inspect.Namespaces(ctx, rdb); err != nil || len(found) != 0 {
		t.Errorf("namespaces after a failed start = %v, %v; want none", found, err)
	}
	ks := keyspace.MustNew("fresh")
	if left := rdb.Keys(ctx, ks.Base()+"*").Val(); len(left) != 0 {
		for _, k := range left {
			if ttl := rdb.PTTL(ctx, k).Val(); ttl <= 0 {
				t.Errorf("the failed start left %s without a TTL", k)
			}
		}
	}

	// A namespace a launcher ran in keeps what describes its bot.
	ran := keyspace.MustNew("ran")
	rdb.HSet(ctx, ran.Launcher(), "status", "stopped")
	cfg.Namespace = "ran"
	if err := startOnce(t, cfg); err == nil {
		t.Fatal("start succeeded")
	}
	if n := rdb.Exists(ctx, ran.Launcher(), ran.Gateway()).Val(); n != 2 {
		t.Errorf("a failed restart of a bot that ran removed its records (%d of 2 left)", n)
	}
}

// A plan with fewer clusters or shards used to leave the records of the
// ones it dropped, which no process would ever update or remove.
func TestSmallerPlanDropsStaleRecords(t *testing.T) {
	srv, err := discordtest.NewServer(discordtest.Options{Shards: 2, MaxConcurrency: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	_, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("shrink")
	ctx := context.Background()
	rdb.HSet(ctx, ks.Launcher(), "status", "stopped")
	rdb.HSet(ctx, ks.ShardMap(), "shard_count", 4, "clusters", 4, "0", 0, "1", 1, "2", 2, "3", 3)
	for i := range 4 {
		rdb.HSet(ctx, ks.Cluster(i), "status", "stopped")
		rdb.HSet(ctx, ks.ShardStatus(i), "status", "stopped")
	}
	cfg := Config{Worker: nopWorker{}, Token: srv.Token(), RESTURL: srv.RESTURL(), Redis: rdb,
		Namespace: "shrink", Shards: 2, Clusters: 1}
	if err := startOnce(t, cfg); err != nil {
		t.Fatal(err)
	}
	if n := rdb.Exists(ctx, ks.Cluster(0), ks.ShardStatus(0), ks.ShardStatus(1)).Val(); n != 3 {
		t.Errorf("%d of the 3 records still planned are left", n)
	}
	if n := rdb.Exists(ctx, ks.Cluster(1), ks.Cluster(2), ks.Cluster(3), ks.ShardStatus(2), ks.ShardStatus(3)).Val(); n != 0 {
		t.Errorf("%d records of dropped clusters and shards are left", n)
	}
}
