package redisipc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/keyspace"
)

func TestGatherAndEval(t *testing.T) {
	_, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("unit")
	ctx := ctxT(t, 10*time.Second)
	clusters := make([]*Node, 3)
	var bumped atomic.Int32
	for i := range clusters {
		clusters[i] = newNode(t, fastOpts(rdb, ks, ClusterAddr(i)))
		clusters[i].EvalEnv().Set("guilds", 100*(i+1))
		clusters[i].EvalEnv().Set("double", func(x int) int { return 2 * x })
		clusters[i].EvalEnv().Set("bump", func() int { return int(bumped.Add(1)) })
		clusters[i].HandleCommand("whoami", func(ctx context.Context, r *Request) ([]byte, error) {
			return []byte(clusters[i].Addr()), nil
		})
	}
	svc := newNode(t, fastOpts(rdb, ks, "service:s"))
	svc.EvalEnv().Provide("queue", func() any { return []int{1, 2, 3} })
	newNode(t, fastOpts(rdb, ks, "launcher"))
	cli := newNode(t, fastOpts(rdb, ks, "cli:a"))

	values := func(g *Gathered) string {
		var parts []string
		for _, a := range g.Answers {
			if a.Err != nil {
				parts = append(parts, a.From+"=ERR")
				continue
			}
			parts = append(parts, a.From+"="+string(a.Payload))
		}
		return strings.Join(parts, " ")
	}
	for _, tc := range []struct {
		target, expr, want string
	}{
		{TargetClusters, "cluster_id * 10", "cluster:0=0 cluster:1=10 cluster:2=20"},
		{TargetClusters, "double(guilds)", "cluster:0=200 cluster:1=400 cluster:2=600"},
		{"cluster:1", `{"id": cluster_id, "kind": kind}`, `cluster:1={"id":1,"kind":"cluster"}`},
		{TargetServices, "sum(queue)", "service:s=6"},
		{"launcher", "addr", `launcher="launcher"`},
		{TargetAll, "kind", `cluster:0="cluster" cluster:1="cluster" cluster:2="cluster" launcher="launcher" service:s="service"`},
		{TargetAll, "uptime_seconds > 0 && memory.heap_alloc > 0 && pid > 0", "cluster:0=true cluster:1=true cluster:2=true launcher=true service:s=true"},
	} {
		t.Run(tc.target+" "+tc.expr, func(t *testing.T) {
			g, err := cli.Eval(ctx, tc.target, tc.expr)
			if err != nil {
				t.Fatal(err)
			}
			if got := values(g); got != tc.want || len(g.Missing) != 0 {
				t.Fatalf("Eval = %s (missing %v), want %s", got, g.Missing, tc.want)
			}
		})
	}

	// A syntax error fails at once; an environment error comes back from
	// every target as ErrEval; assignment is not part of the language.
	for _, bad := range []string{"1 +* 2", "cluster_id = 5", "(("} {
		if _, err := cli.Eval(ctx, TargetClusters, bad); !errors.Is(err, ErrEval) {
			t.Fatalf("%q: %v, want ErrEval", bad, err)
		}
	}
	for _, bad := range []string{"no_such_name + 1", `double("x")`, "1 / 0 > 0 ? cluster_id.x : 1"} {
		g, err := cli.Eval(ctx, TargetClusters, bad)
		if err != nil || len(g.Answers) != 3 {
			t.Fatalf("%q: %+v, %v", bad, g, err)
		}
		for _, a := range g.Answers {
			if !errors.Is(a.Err, ErrEval) {
				t.Fatalf("%q on %s: %v, want ErrEval", bad, a.From, a.Err)
			}
		}
	}
	// Only registered functions act on the process.
	if g, err := cli.Eval(ctx, "cluster:0", "bump()"); err != nil || values(g) != "cluster:0=1" {
		t.Fatalf("bump: %v %v", values(g), err)
	}

	// Cluster commands, by id and to all.
	if out, err := cli.Command(ctx, 2, "whoami", nil); err != nil || string(out) != "cluster:2" {
		t.Fatalf("Command = %q, %v", out, err)
	}
	g, err := cli.CommandAll(ctx, "whoami", nil)
	if err != nil || values(g) != "cluster:0=cluster:0 cluster:1=cluster:1 cluster:2=cluster:2" {
		t.Fatalf("CommandAll = %s, %v", values(g), err)
	}

	// A silent cluster is reported missing at the deadline; a cluster the
	// shard map knows but nobody serves is missing at once.
	block := make(chan struct{})
	defer close(block)
	for i, c := range clusters {
		c.Handle("slow", func(ctx context.Context, r *Request) ([]byte, error) {
			if i == 1 {
				<-block
			}
			return []byte("ok"), nil
		})
	}
	rdb.HSet(ctx, ks.ShardMap(), "shard_count", 4, "0", 0, "1", 1, "2", 2, "3", 3, "clusters", 4)
	cli.shards = shardMapCache{} // forget the map read before it existed
	sctx, cancel := context.WithTimeout(ctx, 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	g, err = cli.Gather(sctx, TargetClusters, "slow", nil)
	if err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("Gather took %v past its 300ms deadline", el)
	}
	if values(g) != "cluster:0=ok cluster:2=ok" || fmt.Sprint(g.Missing) != "[cluster:1 cluster:3]" ||
		len(g.MissingInstances) != 1 || g.MissingInstances[0] != clusters[1].Instance() {
		t.Fatalf("Gather = %s missing %v %v", values(g), g.Missing, g.MissingInstances)
	}

	if _, err := cli.Gather(ctx, "service:none", OpPing, nil); !errors.Is(err, ErrNoResponders) {
		t.Fatalf("Gather to nobody: %v, want ErrNoResponders", err)
	}
	if _, err := cli.Gather(ctx, "everyone", OpPing, nil); !errors.Is(err, ErrBadAddress) {
		t.Fatalf("Gather to a bad target: %v, want ErrBadAddress", err)
	}
}

func TestCallGuild(t *testing.T) {
	_, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("unit")
	ctx := ctxT(t, 10*time.Second)
	for i := range 2 {
		n := newNode(t, fastOpts(rdb, ks, ClusterAddr(i)))
		n.HandleCommand("owner", func(ctx context.Context, r *Request) ([]byte, error) { return []byte(n.Addr()), nil })
	}
	cli := newNode(t, fastOpts(rdb, ks, "cli:a"))

	guild := func(shard int) uint64 { return uint64(shard+8*1000) << 22 } // lands on shard with 8 shards
	if _, err := cli.CommandGuild(ctx, guild(0), "owner", nil); !errors.Is(err, ErrNoShardMap) {
		t.Fatalf("without a shard map: %v, want ErrNoShardMap", err)
	}
	cli.shards = shardMapCache{} // drop the cached empty map
	fields := []any{"shard_count", 8, "clusters", 2}
	for s := range 8 {
		fields = append(fields, fmt.Sprint(s), s/4)
	}
	rdb.HSet(ctx, ks.ShardMap(), fields...)
	for s := range 8 {
		if got := ShardOf(guild(s), 8); got != s {
			t.Fatalf("ShardOf = %d, want %d", got, s)
		}
		out, err := cli.CommandGuild(ctx, guild(s), "owner", nil)
		if want := ClusterAddr(s / 4); err != nil || string(out) != want {
			t.Fatalf("guild on shard %d: %q, %v; want %s", s, out, err, want)
		}
	}
}
