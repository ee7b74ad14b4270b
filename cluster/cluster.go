// Package cluster runs one cluster: a process that owns a range of a bot's
// gateway shards through one disgo client, and keeps everything another
// process needs to take over in Redis.
//
// What Run keeps in Redis: each shard's session (package sessions, so a
// restarted cluster RESUMEs instead of spending an IDENTIFY, and Discord
// replays what was dispatched meanwhile), each shard's status, the cluster's
// own hash (package clusterhash) and its part of the shard map (package
// shardmap), a heartbeat key whose TTL lapses
// when an event handler is stuck (so the launcher replaces a wedged process),
// and lifecycle events (package lifecycle). The keys, their types, fields and
// lifetimes are described once, in the "Redis key schema" table of the
// repository's README.md.
//
// IDENTIFYs go through identify.Limiter, so clusters in any number of
// processes share the bot's identify buckets.
//
// Redis may fail or lose every key while Run runs: the shards keep their
// sockets, every loop logs and retries, and once per HeartbeatInterval the
// cluster rewrites whichever of its records went missing (its hash, its
// part of the shard map, sessions, shard statuses). Each connected shard's
// projection is marked by keyspace.ShardProjected; when the mark is gone,
// the projection was lost, and the cluster re-identifies the shard (after
// one identify window, within the session start budget) so that Discord
// sends every guild again. Run itself returns an error for Redis only at
// start.
//
// What Run shares with the rest of the bot (fields of Cluster):
//
//   - IPC: the node "cluster:<id>", created before Launch and serving once
//     Launch returned. It answers cache.FetchOp for the cluster's guilds
//     from Cluster.Owners (the disgo client's cache, else what REST
//     returned less than Options.OwnerCacheTTL ago, else REST), and eval
//     expressions (redisipc.Node.Eval) against an environment with, besides
//     redisipc's own names: cluster (id), shards and shard_ids (ids),
//     shard_count, shard_statuses (a list of {id, status, latency_ms,
//     guilds}: guilds is the shard's count, from the projection's guild
//     set when it is on, else counted from events and carried in the saved
//     session; -1 when unknown), ready, latency_ms (average), guilds, and
//     with the projection on users, channels, roles, members, unavailable (this cluster's, from the projection) and the
//     function total_counts() (the whole bot's). Values and functions set
//     with IPC.EvalEnv().Set are added to these.
//   - The cache projection (package cache): a Projector fed with every raw
//     dispatch, off the gateway's event path (Options.Cache,
//     Options.DisableCache). A session is saved only once the events
//     before its sequence are in the projection, so a crash replays into
//     it rather than loses from it.
//   - Stats: the reporter "cluster:<id>" (package stats).
//
// The context Launch gets lives as long as the cluster: it is cancelled
// when the cluster begins to stop, never merely because Launch returned, so
// a loop started from Launch with it runs until shutdown (services behave
// the same way). Launch itself must return promptly: the launcher's ready
// timeout counts from the spawn.
//
// Delivery: events are at-least-once across restarts. A graceful stop
// (ctx cancelled, e.g. on SIGTERM) closes every shard with 1012, waits for
// the listeners in flight and saves each shard's last handled sequence, so
// the next start resumes exactly where this one stopped: nothing is lost
// and nothing is replayed. After a crash, the next start replays what was
// handled after the last periodic save (at most about SessionSyncInterval
// of traffic); listeners and projections must tolerate seeing an event
// twice.
package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync/atomic"
	"time"

	"github.com/disgoorg/disgo"
	"github.com/disgoorg/disgo/bot"
	"github.com/disgoorg/disgo/sharding"
	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/cache"
	"github.com/megane-go/megane/identify"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/redisipc"
	"github.com/megane-go/megane/sessions"
	"github.com/megane-go/megane/stats"
	"github.com/megane-go/megane/store"
)

// Worker is the user's bot code for one cluster.
type Worker interface {
	// Launch is called once the disgo client exists and before any shard
	// connects, so listeners added here with c.Client.AddEventListeners see
	// every event, including those Discord replays after a RESUME. IPC
	// handlers, eval values and owner lookups registered here
	// (c.IPC.Handle, c.IPC.EvalEnv().Set, c.Owners.Handle) are in place
	// before the node serves its first request. It must return promptly
	// (start goroutines for long work); use c.Ready to wait for the
	// shards. An error stops Run before anything connects.
	//
	// ctx lives as long as the cluster: it ends when the cluster begins to
	// stop (Run's context ended, or a shard failed for good), not when
	// Launch returns, so goroutines started here may use it and stop with
	// the cluster. A service's Launch gets the same kind of context.
	//
	// disgo runs all listeners of the process one at a time on the shards'
	// read goroutines: a slow listener delays every shard, and one slower
	// than the heartbeat interval makes disgo reconnect.
	//
	// An event's sequence is saved once its listeners returned, so a
	// listener must either finish its work before returning (quick,
	// idempotent work: a crash replays it) or hand it off durably before
	// returning, e.g. with services.Send to a service's Redis stream inbox
	// (under a deadline that covers the queue and the work: the request
	// carries it) or an XADD to a stream of its own, whose consumer is
	// idempotent. Work started in a goroutine or an in-process queue is
	// lost if the process dies before it finishes: the event was saved as
	// handled and is not replayed. See "Delivery guarantees" in the README.
	Launch(ctx context.Context, c *Cluster) error
}

// Shutdowner is implemented by a Worker that wants to clean up when the
// cluster stops. Shutdown is called after every shard was closed and its
// session saved, with a context bounded by Options.StopTimeout. The IPC
// node still serves and calls meanwhile; it is closed after Shutdown.
type Shutdowner interface {
	Shutdown(ctx context.Context) error
}

// Cluster is what a Worker gets: the disgo client of this cluster's shards,
// the shared Redis, and what the cluster shares with the rest of the bot
// (IPC, the central store, the cache projection, statistics).
type Cluster struct {
	// ID is the cluster id.
	ID int
	// ShardIDs are the shards this cluster runs, ascending.
	ShardIDs []int
	// ShardCount is the bot's total shard count.
	ShardCount int
	// Client is the disgo client. Its shard manager runs ShardIDs; its
	// in-process cache is off unless BotOptions turned it on.
	Client *bot.Client
	// Redis is the shared Redis.
	Redis redis.UniversalClient
	// Keys is the bot's keyspace.
	Keys keyspace.Keyspace
	// Logger is the cluster's logger.
	Logger *slog.Logger

	// IPC is the cluster's node, at the address "cluster:<ID>". It is
	// registered before Launch, so handlers and eval values added there
	// (IPC.Handle, IPC.HandleCommand, IPC.EvalEnv().Set) are in place
	// before it serves: Run starts serving when Launch returns. The node
	// answers cache.FetchOp from Owners, and "$stats" with the cluster's
	// figures (redisipc.StatsReply: Cluster, and Fields with those added
	// with Stats.Add; a call to IPC.SetStats replaces both). It is closed after
	// the shards' sessions are saved and Shutdown returned.
	IPC *redisipc.Node
	// Store is the central store.
	Store *store.Store
	// Cache reads the Redis projection of every cluster's guilds.
	Cache *cache.Reader
	// Fetch gets guilds, channels, users, members and roles wherever they
	// live: from the projection when it can answer, else from the owning
	// cluster over IPC (this one is answered in-process), else from this
	// cluster's disgo client.
	Fetch *cache.Fetcher
	// Owners answers the cross-cluster fetches (cache.FetchOp) other
	// processes send this cluster about its guilds. The built-in kinds
	// (guild, channel, role, member, user) come from the disgo client: its
	// in-process cache when it holds the entity, else REST. Register kinds
	// of your own, or replace a built-in one, with Owners.Handle. What REST
	// returned is kept for Options.OwnerCacheTTL, so a repeated fetch of one
	// entity does not reach Discord each time; cache.WithSources tells a
	// caller which answers did.
	Owners *cache.OwnerMux
	// Stats is the cluster's statistics reporter ("cluster:<ID>"). It
	// publishes the built-in process figures plus shards, shards_ready,
	// guilds, latency_ms (average over the shards), the owner lookups'
	// owner_fetches, owner_rest (REST calls) and owner_rest_cached, and the
	// projection's counters; add your own with Stats.Add (typed: a number
	// stays a number for stats.ReadAll and megane-cli stats).
	Stats *stats.Reporter

	ready <-chan struct{}
}

// Ready returns a channel closed once every shard of the cluster has been
// READY or RESUMED.
func (c *Cluster) Ready() <-chan struct{} { return c.ready }

// WaitReady blocks until every shard of the cluster has been READY or
// RESUMED, or ctx ends.
func (c *Cluster) WaitReady(ctx context.Context) error {
	select {
	case <-c.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Run runs the cluster until ctx ends, then stops it resumably and returns
// nil (or the error of Worker's Shutdown). It returns an error when the options are unusable
// (ErrInvalidOptions), when Redis or Discord cannot be reached at start,
// when the daily session budget is too low (identify.ErrSessionStartLimit),
// when Launch fails, or when a shard gives up for good (ErrShardFailed; the
// other shards are stopped resumably first). No panic escapes Run: panics in
// Launch, Shutdown, the callbacks and disgo's event handling are recovered
// and logged (or returned, for Launch and Shutdown).
func Run(ctx context.Context, opts Options, w Worker) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("cluster: panic: %v\n%s", p, debug.Stack())
		}
	}()
	o := opts.withDefaults()
	if w == nil {
		return fmt.Errorf("%w: Worker is nil", ErrInvalidOptions)
	}
	if err := o.validate(); err != nil {
		return err
	}
	r := &runner{
		o:      o,
		log:    o.Logger.With(slog.Int("cluster_id", o.ID)),
		rdb:    o.Redis,
		ks:     o.Keys,
		fatal:  make(chan error, 1),
		opens:  map[int]*openState{},
		reopen: newReopener(),
	}
	return r.run(ctx, w)
}

type runner struct {
	o   Options
	log *slog.Logger
	rdb redis.UniversalClient
	ks  keyspace.Keyspace

	client  *bot.Client
	sm      sharding.ShardManager
	limiter *identify.Limiter
	track   *tracker
	ids     []int

	fatal chan error
	// fenced is set once a session write was refused for a newer owner's
	// fence.
	fenced atomic.Bool
	opens  map[int]*openState

	reopen    *reopener
	startedAt time.Time
	readyAt   atomic.Int64 // unix ms; zero until ready

	sh *shared
	// behindSince and behindWarned belong to the session writer (and to
	// finish, which runs after it stopped).
	behindSince, behindWarned time.Time
}

func (r *runner) run(ctx context.Context, w Worker) error {
	o := r.o
	client, err := disgo.New(o.Token, r.botOptions()...)
	if err != nil {
		return fmt.Errorf("cluster: build client: %w", err)
	}
	r.client = client
	defer client.Rest.Close(context.WithoutCancel(ctx))

	url, count, maxConc, err := r.resolveGateway(ctx)
	if err != nil {
		return err
	}
	ids := o.ShardIDs
	if len(ids) == 0 {
		for i := range count {
			ids = append(ids, i)
		}
	}
	ids = sortedIDs(setOf(ids))
	if err := validateShards(ids, count); err != nil {
		return err
	}
	r.ids = ids

	if o.Fence > 0 {
		if err := sessions.Fence(ctx, r.rdb, r.ks, ids, o.Fence); err != nil {
			return fmt.Errorf("cluster %d: %w", o.ID, err)
		}
	}
	states, err := sessions.Load(ctx, r.rdb, r.ks, ids)
	if err != nil {
		return fmt.Errorf("cluster: %w", err)
	}
	for id, s := range states {
		if s.ShardCount != 0 && s.ShardCount != count {
			// Resuming would bring back the old layout's guilds on this
			// shard; its first READY replaces the stale session.
			r.log.Warn("cluster: saved session is of another shard count; identifying",
				slog.Int("shard_id", id), slog.Int("session_shard_count", s.ShardCount), slog.Int("shard_count", count))
			delete(states, id)
		}
	}
	if err := identify.CheckBudget(ctx, r.rdb, r.o.IdentifyKeys, len(ids)-len(states), o.IdentifyReserve); err != nil {
		return fmt.Errorf("cluster %d: %w", o.ID, err)
	}
	r.track = newTracker(o.ID, count, ids, states)
	r.sm = r.shardManager(url, count, maxConc, ids, states)
	client.ShardManager = r.sm

	c := &Cluster{
		ID: o.ID, ShardIDs: ids, ShardCount: count, Client: client,
		Redis: r.rdb, Keys: r.ks, Logger: r.log, ready: r.track.ready,
	}
	if err := r.attach(ctx, c); err != nil {
		return err
	}
	// stop closes these in order; this covers the early returns.
	defer r.sh.close(ctx, o.StopTimeout, r.log)
	if err := r.register(ctx, ids, count); err != nil {
		return err
	}
	bg := r.startLoops(context.WithoutCancel(ctx))

	// The Worker's context lives until the cluster begins to stop, for
	// whatever reason (ctx ended, a shard failed for good, Launch failed),
	// not until Launch returns: goroutines Launch starts may keep it.
	wctx, stopWorker := context.WithCancel(ctx)
	defer stopWorker()
	if o.Standby {
		w = standbyWorker{}
	}
	if err := r.launch(wctx, w, c); err != nil {
		r.finish(ctx, bg, "failed")
		return err
	}
	// Serve only now, so that requests find the handlers Launch registered.
	if err := r.sh.node.Start(ctx); err != nil {
		r.finish(ctx, bg, "failed")
		return fmt.Errorf("cluster: IPC node: %w", err)
	}
	bg.work.Go(func() {
		defer r.recoverCallback("stats reporter")
		r.sh.rep.Run(bg.workCtx)
	})

	// The watch ends with the Worker's context too: a cluster that stops
	// before it was ever ready (a shard failed for good) must not wait
	// for a readiness that cannot come.
	readyWatch := make(chan struct{})
	go func() {
		defer close(readyWatch)
		select {
		case <-r.track.ready:
			if o.Standby && !r.waitGuilds(wctx) {
				return
			}
			r.onReady(ctx)
		case <-wctx.Done():
		}
	}()

	resuming := 0
	for _, id := range ids {
		s, ok := states[id]
		if ok {
			resuming++
		}
		r.open(id, s, ok)
	}
	r.log.InfoContext(ctx, "cluster opening shards",
		slog.Int("shards", len(ids)), slog.Int("resuming", resuming),
		slog.Int("identifying", len(ids)-resuming), slog.Int("shard_count", count),
		slog.Int("max_concurrency", maxConc), slog.String("limiter", o.Limiter))

	var reason error
	select {
	case <-ctx.Done():
	case reason = <-r.fatal:
		r.log.Error("cluster stopping after a fatal shard error", slog.Any("error", reason))
	}
	stopWorker()
	err = r.stop(ctx, w, bg, reason)
	<-readyWatch
	return err
}

func setOf(ids []int) map[int]struct{} {
	m := make(map[int]struct{}, len(ids))
	for _, id := range ids {
		m[id] = struct{}{}
	}
	return m
}
