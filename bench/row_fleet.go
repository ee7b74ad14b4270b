package main

import (
	"context"
	"fmt"
	"time"

	"github.com/megane-go/megane/identify"
	"github.com/megane-go/megane/redisipc"
)

// runFleet starts fleets of 64, 256 and 1,024 shards (max_concurrency 16,
// the fake's identify window shortened to -fleet-window) without the
// projection and measures: time to all ready against the identify-limit
// floor (shards ÷ max_concurrency × window), also scaled back to Discord's
// 5 s window (the measured overhead above the floor kept as it is); RSS,
// USS and goroutines per shard; and Redis memory of the fleet's own
// records (shard map, sessions, statuses, cluster hashes, streams) per
// shard.
func runFleet(e *env) error {
	const mc = 16
	w := e.cfg.fleetWindow
	for i, shards := range e.cfg.fleetShards {
		clusters := e.cfg.fleetClusters[i]
		progress("fleet: %d shards in %d clusters, identify window %s", shards, clusters, w)
		r, err := startFleet(e, fleetSpec{name: fmt.Sprintf("fleet%d", shards), shards: shards, clusters: clusters,
			guilds: shards, window: w, noCache: true})
		if err != nil {
			return err
		}
		err = fleetFigures(e, r, shards, clusters, mc, w)
		r.stop()
		if err != nil {
			return err
		}
	}
	e.notef("fleet: the fake's identify window is %s, %.0f× shorter than Discord's 5 s; \"at 5 s\" adds (shards ÷ 16) × (5 s − %s) to the measured time, i.e. keeps the measured overhead above the floor. Clusters run without the projection, so Redis holds only the fleet's own records.", w, float64(identify.DefaultWindow)/float64(w), w)
	return nil
}

func fleetFigures(e *env, r *fleetRun, shards, clusters, mc int, w time.Duration) error {
	ctx := e.ctx
	floor := float64(shards) / float64(mc) * w.Seconds()
	got := r.ready.Seconds()
	e.add(Figure{Row: "fleet", Name: fmt.Sprintf("%d shards / %d clusters: start to all ready (window %s)", shards, clusters, w), Value: got, Unit: "s",
		Baseline: "identify floor", BaselineValue: floor, Ratio: got / floor})
	floor5 := float64(shards) / float64(mc) * identify.DefaultWindow.Seconds()
	got5 := got + float64(shards)/float64(mc)*(identify.DefaultWindow-w).Seconds()
	e.add(Figure{Row: "fleet", Name: fmt.Sprintf("%d shards: start to all ready, scaled to Discord's 5 s window", shards), Value: got5, Unit: "s",
		Baseline: "identify floor", BaselineValue: floor5, Ratio: got5 / floor5, Target: "≤ 1.1× floor", Met: met(got5 <= 1.1*floor5)})

	time.Sleep(2 * time.Second) // let the start's garbage go
	var rss, uss, goroutines int
	node, err := redisipc.New(ctx, redisipc.Options{Redis: e.rdb, Keys: r.ks, Addr: "cli:bench"})
	if err != nil {
		return err
	}
	defer node.Close(context.Background())
	for _, pid := range r.clusterPIDs() {
		m := memOf(pid)
		rss, uss = rss+m.rss, uss+m.uss
	}
	for id := range clusters {
		st, err := node.StatsOf(ctx, redisipc.ClusterAddr(id))
		if err != nil {
			return fmt.Errorf("stats of cluster %d: %w", id, err)
		}
		goroutines += st.Goroutines
	}
	e.add(Figure{Row: "fleet", Name: fmt.Sprintf("%d shards: RSS per shard (USS as baseline)", shards), Value: float64(rss) / float64(shards), Unit: "KiB",
		Baseline: "USS", BaselineValue: float64(uss) / float64(shards)})
	e.add(Figure{Row: "fleet", Name: fmt.Sprintf("%d shards: goroutines per shard", shards), Value: float64(goroutines) / float64(shards), Unit: ""})
	b, keys, err := keysMemory(ctx, e.rdb, r.ks.Base())
	if err != nil {
		return err
	}
	e.add(Figure{Row: "fleet", Name: fmt.Sprintf("%d shards: Redis bytes per shard, fleet records (%d keys)", shards, keys), Value: float64(b) / float64(shards), Unit: "B"})
	return nil
}
