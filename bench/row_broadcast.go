package main

import (
	"context"
	"fmt"
	"time"

	"github.com/megane-go/megane/redisipc"
)

// runBroadcast measures Gather ($ping) and Eval to every cluster process
// until all answered, samples interleaved with PING.
func runBroadcast(e *env) error {
	n := e.cfg.bcClusters
	progress("broadcast: %d cluster processes of 1 shard", n)
	r, err := startFleet(e, fleetSpec{name: "broadcast", shards: n, clusters: n, guilds: 2 * n})
	if err != nil {
		return err
	}
	defer r.stop()
	ctx := e.ctx
	node, err := redisipc.New(ctx, redisipc.Options{Redis: e.rdb, Keys: r.ks, Addr: "cli:bench"})
	if err != nil {
		return err
	}
	defer node.Close(context.Background())
	// The node learns the live clusters from the directory.
	deadline := time.Now().Add(30 * time.Second)
	check := func(g *redisipc.Gathered, err error) error {
		if err != nil {
			return err
		}
		if len(g.Answers) != n || len(g.Missing) > 0 {
			return fmt.Errorf("%d answers of %d, missing %v", len(g.Answers), n, g.Missing)
		}
		for _, a := range g.Answers {
			if a.Err != nil {
				return a.Err
			}
		}
		return nil
	}
	gather := func() error { return check(node.Gather(ctx, redisipc.TargetClusters, redisipc.OpPing, nil)) }
	eval := func() error { return check(node.Eval(ctx, redisipc.TargetClusters, "cluster_id * 2")) }
	ping := func() error { return e.rdb.Ping(ctx).Err() }
	for {
		err := gather()
		if err == nil {
			break
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("gather: %w", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	for range 200 {
		if err := eval(); err != nil {
			return fmt.Errorf("eval: %w", err)
		}
	}
	l, err := interleaved(e.cfg.broadcasts, ping, gather, eval)
	if err != nil {
		return err
	}
	p := l[0]
	e.add(Figure{Row: "broadcast", Name: fmt.Sprintf("Gather $ping to %d clusters, all answered", n), Value: l[1].us50(), P99: l[1].us99(), Unit: "µs",
		Baseline: "PING p50", BaselineValue: p.us50(), Ratio: l[1].us50() / p.us50(),
		Target: "p50 ≤ 2 ms", Met: met(l[1].p50 <= 2*time.Millisecond)})
	e.add(Figure{Row: "broadcast", Name: fmt.Sprintf("Eval to %d clusters, all answered", n), Value: l[2].us50(), P99: l[2].us99(), Unit: "µs",
		Baseline: "PING p50", BaselineValue: p.us50(), Ratio: l[2].us50() / p.us50(),
		Target: "p50 ≤ 2 ms", Met: met(l[2].p50 <= 2*time.Millisecond)})
	return nil
}
