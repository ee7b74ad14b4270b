package main

import (
	"context"
	"fmt"
	"path/filepath"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/cache"
	"github.com/megane-go/megane/discordtest"
	"github.com/megane-go/megane/inspect"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/lifecycle"
	"github.com/megane-go/megane/redisipc"
	"github.com/megane-go/megane/services"
)

type redisClient = *redis.Client

// newFleet starts a bot in a namespace of its own against a new fake
// Discord and waits until every cluster and service copy is ready.
func (e *env) newFleet(ctx context.Context, o fleetOptions) (*fleet, error) {
	o.defaults()
	e.runs++
	ns := "chaos" + strconv.Itoa(e.runs)
	ks, err := keyspace.New(ns)
	if err != nil {
		return nil, err
	}
	srv, err := discordtest.NewServer(discordtest.Options{
		Shards: o.shards, MaxConcurrency: o.shards, IdentifyWindow: 100 * time.Millisecond,
		HeartbeatInterval: 2 * time.Second, HeartbeatTimeout: o.heartbeatTimeout,
		World: discordtest.WorldOptions{Guilds: o.guilds, Seed: int64(e.runs)},
	})
	if err != nil {
		return nil, fmt.Errorf("fake Discord: %w", err)
	}
	benv := append([]string{"CHAOSBOT_SLOW_COPIES=" + strconv.Itoa(o.slowCopies)}, o.env...)
	b, err := startBot(e.bin, filepath.Join(e.dir, ns+".log"), srv, e.redis, ks,
		botOptions{clusters: o.clusters, shards: o.shards, env: benv})
	if err != nil {
		_ = srv.Close()
		return nil, err
	}
	f := &fleet{e: e, name: ns, srv: srv, ks: ks, rdb: e.redis.client(), bot: b, opts: o}
	t0 := time.Now()
	if err := f.waitReady(ctx, 60*time.Second); err != nil {
		tail := b.tail(30)
		_ = f.close()
		return nil, fmt.Errorf("%s did not start: %w\nlauncher log:\n%s", ns, err, tail)
	}
	f.ready = time.Since(t0)
	return f, nil
}

// waitReady waits for every shard READY at the fake, the launcher's
// all_clusters_ready and every service copy's ready event.
func (f *fleet) waitReady(ctx context.Context, timeout time.Duration) error {
	return waitFor(ctx, "all clusters and services ready", timeout, func() bool {
		if !f.bot.running() {
			return true
		}
		if !f.srv.ShardsReady(f.opts.shards) {
			return false
		}
		evs := events(ctx, f.rdb, f.ks)
		return countEvents(evs, lifecycle.AllClustersReady) > 0 && countEvents(evs, lifecycle.ServiceReady) >= f.opts.slowCopies
	})
}

// ipc returns an IPC node in the fleet's namespace, for calls and evals.
func (f *fleet) ipc(ctx context.Context) (*redisipc.Node, error) {
	if f.node != nil {
		return f.node, nil
	}
	n, err := redisipc.New(ctx, redisipc.Options{Redis: f.rdb, Keys: f.ks, Addr: "cli:chaos" + strconv.Itoa(f.e.runs)})
	if err != nil {
		return nil, err
	}
	f.node = n
	return n, nil
}

// close stops the bot and reports how the launcher exited.
func (f *fleet) close() error {
	if f.node != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_ = f.node.Close(ctx)
		cancel()
	}
	var err error
	if f.bot.running() {
		err = f.bot.stop(30 * time.Second)
	} else {
		err = fmt.Errorf("launcher had exited: %v", f.bot.err)
	}
	_ = f.srv.Close()
	_ = f.rdb.Close()
	return err
}

// health is what "serving again" means after an outage (which ended at
// since): the bot answers messages, megane-cli status sees every shard and cluster ready, the
// cache holds every guild, and the service answers.
func (f *fleet) health(ctx context.Context, tr *traffic, since time.Time) error {
	// The traffic keeps flowing: everything dispatched until 300 ms ago
	// (an answer takes a few) is answered, something after the fault too.
	cutoff := time.Now().Add(-300 * time.Millisecond)
	if cutoff.Before(since) {
		return fmt.Errorf("too soon after the fault")
	}
	if t := tr.tallyBefore(cutoff); t.lost > 0 {
		return fmt.Errorf("%d messages unanswered", t.lost)
	}
	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	ov, err := inspect.New(f.rdb, f.ks).Overview(cctx)
	if err != nil {
		return fmt.Errorf("status: %w", err)
	}
	if ov.ShardCount != f.opts.shards || len(ov.Clusters) != f.opts.clusters {
		return fmt.Errorf("status: %d shards in %d clusters, want %d in %d", ov.ShardCount, len(ov.Clusters), f.opts.shards, f.opts.clusters)
	}
	for _, c := range ov.Clusters {
		if c.Status != "ready" || !c.Alive {
			return fmt.Errorf("status: cluster %d is %q (alive %v)", c.ID, c.Status, c.Alive)
		}
	}
	counts, err := cache.NewReader(f.rdb, f.ks).TotalCounts(cctx)
	if err != nil {
		return fmt.Errorf("cache counts: %w", err)
	}
	if want := int64(len(f.srv.World().Guilds)); counts.Guilds != want {
		return fmt.Errorf("cache: %d guilds, want %d", counts.Guilds, want)
	}
	if f.opts.slowCopies > 0 {
		node, err := f.ipc(cctx)
		if err != nil {
			return fmt.Errorf("IPC node: %w", err)
		}
		var out map[string]int
		if err := services.Call(cctx, node, "slow", "work", map[string]int{"ms": 1}, &out); err != nil {
			return fmt.Errorf("service: %w", err)
		}
	}
	return nil
}
