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
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/disgoorg/disgo"
	"github.com/disgoorg/disgo/bot"
	disgocache "github.com/disgoorg/disgo/cache"
	"github.com/disgoorg/disgo/gateway"
	"github.com/disgoorg/disgo/rest"
	"github.com/disgoorg/disgo/sharding"
	"github.com/disgoorg/snowflake/v2"
	"github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/cache"
	"github.com/megane-go/megane/clusterhash"
	"github.com/megane-go/megane/identify"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/lifecycle"
	"github.com/megane-go/megane/redisipc"
	"github.com/megane-go/megane/sessions"
	"github.com/megane-go/megane/shardmap"
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
	// figures, those added with Stats.Add included (a call to
	// IPC.SetStats replaces them). It is closed after
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
	opens map[int]*openState

	reopen    *reopener
	startedAt time.Time
	readyAt   atomic.Int64 // unix ms; zero until ready

	sh *shared
	// behindSince and behindWarned belong to the session writer (and to
	// finish, which runs after it stopped).
	behindSince, behindWarned time.Time
}

type openState struct {
	cancel   context.CancelFunc
	resuming bool
	done     chan struct{}
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
	if err := identify.CheckBudget(ctx, r.rdb, r.ks, len(ids)-len(states), o.IdentifyReserve); err != nil {
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

	readyWatch := make(chan struct{})
	go func() {
		defer close(readyWatch)
		select {
		case <-r.track.ready:
			r.onReady(ctx)
		case <-ctx.Done():
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

func (r *runner) botOptions() []bot.ConfigOpt {
	opts := []bot.ConfigOpt{
		bot.WithLogger(r.log),
		// The shared truth is the Redis projection; disgo's in-process cache
		// would only double the memory.
		bot.WithCacheConfigOpts(disgocache.WithCaches(disgocache.FlagsNone)),
	}
	if r.o.RESTURL != "" {
		opts = append(opts, bot.WithRestClientConfigOpts(rest.WithURL(r.o.RESTURL)))
	}
	return append(opts, r.o.BotOptions...)
}

// resolveGateway fills in what Options left open, preferring what the
// launcher saved in Redis over a GET /gateway/bot per cluster.
func (r *runner) resolveGateway(ctx context.Context) (url string, count, maxConc int, err error) {
	url, count, maxConc = r.o.GatewayURL, r.o.ShardCount, r.o.MaxConcurrency
	if url != "" && count > 0 && maxConc > 0 {
		return url, count, maxConc, nil
	}
	info, err := identify.LoadGatewayInfo(ctx, r.rdb, r.ks)
	saved := err == nil
	if err != nil && !errors.Is(err, identify.ErrNoGatewayInfo) {
		return "", 0, 0, fmt.Errorf("cluster: %w", err)
	}
	fill := func(i identify.GatewayInfo) {
		if url == "" {
			url = i.URL
		}
		if count <= 0 {
			count = i.Shards
		}
		if maxConc <= 0 {
			maxConc = i.MaxConcurrency
		}
	}
	fill(info)
	if url == "" || count <= 0 || maxConc <= 0 {
		gb, err := r.client.Rest.GetGatewayBot(rest.WithCtx(ctx))
		if err != nil {
			return "", 0, 0, fmt.Errorf("cluster: GET /gateway/bot: %w", err)
		}
		fetched := identify.GatewayInfo{
			URL: gb.URL, Shards: gb.Shards, MaxConcurrency: gb.SessionStartLimit.MaxConcurrency,
			Total: gb.SessionStartLimit.Total, Remaining: gb.SessionStartLimit.Remaining,
			ResetAt: time.Now().Add(time.Duration(gb.SessionStartLimit.ResetAfter) * time.Millisecond),
		}
		fill(fetched)
		if !saved {
			// Nobody saved the budget yet (no launcher): keep Discord's so
			// the limiter can count session starts.
			fetched.Shards, fetched.MaxConcurrency = count, max(maxConc, 1)
			if err := identify.SaveGatewayInfo(ctx, r.rdb, r.ks, fetched); err != nil {
				return "", 0, 0, fmt.Errorf("cluster: %w", err)
			}
		}
	}
	if maxConc <= 0 {
		maxConc = 1
	}
	if url == "" {
		return "", 0, 0, fmt.Errorf("%w: no gateway URL from Options, Redis or Discord", ErrInvalidOptions)
	}
	if strings.Contains(url, "?") {
		return "", 0, 0, fmt.Errorf("%w: gateway URL %q has a query string", ErrInvalidOptions, url)
	}
	return url, count, maxConc, nil
}

func (r *runner) shardManager(url string, count, maxConc int, ids []int, states map[int]sessions.State) sharding.ShardManager {
	o := r.o
	withStates := make(map[int]sharding.ShardState, len(ids))
	for _, id := range ids {
		s := states[id]
		withStates[id] = sharding.ShardState{SessionID: s.SessionID, Sequence: s.Sequence, ResumeURL: s.ResumeURL}
	}
	gwOpts := append([]gateway.ConfigOpt{
		gateway.WithURL(url),
		gateway.WithLogger(r.log),
		gateway.WithOS(runtime.GOOS),
		gateway.WithBrowser(disgo.Name),
		gateway.WithDevice(disgo.Name),
		gateway.WithIntents(o.Intents),
		gateway.WithEnableRawEvents(true),
	}, o.GatewayOptions...)
	opts := []sharding.ConfigOpt{
		sharding.WithLogger(r.log),
		sharding.WithShardCount(count),
		sharding.WithShardIDsWithStates(withStates),
		sharding.WithGatewayConfigOpts(gwOpts...),
		sharding.WithCloseHandler(r.onShardGaveUp),
	}
	if o.Limiter == LimiterRedis {
		r.limiter = identify.NewLimiter(r.rdb, r.ks, maxConc,
			identify.WithWindow(o.IdentifyWindow), identify.WithLogger(r.log))
		opts = append(opts, sharding.WithIdentifyRateLimiter(r.limiter))
	} else {
		opts = append(opts, sharding.WithIdentifyRateLimiterConfigOpt(
			gateway.WithIdentifyMaxConcurrency(maxConc),
			gateway.WithIdentifyWait(o.IdentifyWindow),
			gateway.WithIdentifyRateLimiterLogger(r.log)))
	}
	return sharding.New(o.Token, r.handle, append(opts, o.ShardingOptions...)...)
}

// register writes the cluster's hash and its part of the shard map.
func (r *runner) register(ctx context.Context, ids []int, count int) error {
	host, _ := os.Hostname()
	r.startedAt = time.Now()
	own := shardmap.Map{ShardCount: count, Owners: make(map[int]int, len(ids))}
	for _, id := range ids {
		own.Owners[id] = r.o.ID
	}
	pipe := r.rdb.Pipeline()
	clusterhash.Register(ctx, pipe, r.ks, r.o.ID, clusterhash.Process{
		PID: os.Getpid(), Host: host, Shards: ids, ShardCount: count, StartedAt: r.startedAt,
	})
	shardmap.Add(ctx, pipe, r.ks, own)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("cluster: register: %w", err)
	}
	return nil
}

func (r *runner) launch(ctx context.Context, w Worker, c *Cluster) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("cluster: Launch panicked: %v\n%s", p, debug.Stack())
		}
	}()
	if err := w.Launch(ctx, c); err != nil {
		return fmt.Errorf("cluster: launch: %w", err)
	}
	return nil
}

func (r *runner) onReady(ctx context.Context) {
	now := time.Now()
	r.readyAt.Store(now.UnixMilli())
	if err := clusterhash.SetReady(ctx, r.rdb, r.ks, r.o.ID, now).Err(); err != nil {
		r.log.Warn("cluster: could not record readiness", slog.Any("error", err))
	}
	// Written before OnReady tells the launcher, so the events stream stays
	// in causal order: this ready comes before whatever the launcher does
	// next (the next cluster's exit in a rolling restart).
	// The shard events queued so far go first, in the same pipeline.
	evs := r.track.takeEvents()
	pipe := r.rdb.Pipeline()
	for _, ev := range evs {
		lifecycle.PublishPipe(ctx, pipe, r.ks, ev)
	}
	ready := lifecycle.ClusterEvent(lifecycle.ClusterReady, r.o.ID, "")
	lifecycle.PublishPipe(ctx, pipe, r.ks, ready)
	if _, err := pipe.Exec(ctx); err != nil {
		r.track.requeue(append(evs, ready))
		r.log.Warn("cluster: could not publish readiness", slog.Any("error", err))
	}
	r.log.Info("cluster ready", slog.Int("shards", len(r.ids)))
	if r.sh != nil && r.sh.rep != nil {
		// Publish at once rather than at the next interval, so statistics
		// read right after "ready" already show the shards up.
		go func() {
			defer r.recoverCallback("stats")
			if err := r.sh.rep.Publish(context.WithoutCancel(ctx)); err != nil {
				r.log.Warn("cluster: could not publish statistics", slog.Any("error", err))
			}
		}()
	}
	if f := r.o.OnReady; f != nil {
		go func() {
			defer r.recoverCallback("OnReady")
			f()
		}()
	}
}

func (r *runner) recoverCallback(name string) {
	if p := recover(); p != nil {
		r.log.Error("cluster: callback panicked", slog.String("callback", name),
			slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
	}
}

// open connects one shard. Its context is not Run's: disgo answers a
// cancelled open with close code 1000, which ends a session Discord would
// otherwise keep resumable, so stop decides per shard when to cancel.
func (r *runner) open(id int, s sessions.State, resume bool) {
	octx, cancel := context.WithCancel(context.Background())
	op := &openState{cancel: cancel, resuming: resume, done: make(chan struct{})}
	r.opens[id] = op
	go func() {
		defer close(op.done)
		defer r.recoverCallback("open shard")
		var err error
		if resume {
			err = r.sm.ResumeShard(octx, id, sharding.ShardState{SessionID: s.SessionID, Sequence: s.Sequence, ResumeURL: s.ResumeURL})
		} else {
			err = r.sm.OpenShard(octx, id)
		}
		if err != nil && octx.Err() == nil {
			r.fail(fmt.Errorf("%w: shard %d: %w", ErrShardFailed, id, err))
		}
	}()
}

func (r *runner) fail(err error) {
	select {
	case r.fatal <- err:
	default:
	}
}

// onShardGaveUp is disgo's close handler: it runs when a shard stops for
// good after READY (a close code that forbids reconnecting).
func (r *runner) onShardGaveUp(g gateway.Gateway, err error, reconnect bool) {
	if reconnect || r.reopen.expected(g) {
		return
	}
	r.track.disconnected(g.ShardID(), false)
	r.fail(fmt.Errorf("%w: shard %d closed for good: %w", ErrShardFailed, g.ShardID(), err))
}

// handle is every shard's gateway event handler: it passes each event to
// disgo's event manager and records, once the listeners have returned, the
// sequence that is now safe to resume from.
func (r *runner) handle(g gateway.Gateway, t gateway.EventType, seq int, data gateway.EventData) {
	shard := g.ShardID()
	r.track.begin(shard)
	defer r.track.end(shard)
	defer func() {
		if p := recover(); p != nil {
			// disgo's typed handlers can panic on payloads they do not
			// expect; losing one event beats losing the process.
			r.log.Error("cluster: panic while handling a gateway event",
				slog.Int("shard_id", shard), slog.String("event_type", string(t)),
				slog.Int("sequence", seq), slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
		}
	}()

	switch t {
	case gateway.EventTypeHeartbeatAck:
		// disgo keeps no synchronised latency. Read it here, on the shard's
		// goroutine right after it recorded the ACK: only the send time is
		// written elsewhere, and a torn read costs one wrong sample.
		r.track.setLatency(shard, g.Latency())
		r.client.EventManager.HandleGatewayEvent(g, t, seq, data)
		return
	case gateway.EventTypeRaw:
		r.track.rawSeen(shard, seq)
		proj := r.sh.proj
		if raw, ok := data.(gateway.EventRaw); ok && raw.Payload != nil && (proj != nil || r.o.OnRawEvent != nil) {
			// The payload reader can be read once: copy it, and hand
			// disgo's Raw listeners a fresh reader over the copy.
			b, err := readPayload(raw.Payload)
			if err == nil {
				if proj != nil {
					// Queued in sequence order, before the event counts as
					// handled: a saved session never points past it.
					proj.Enqueue(shard, string(raw.EventType), b)
				}
				if r.o.OnRawEvent != nil {
					ub := b
					if proj != nil {
						// The projector keeps b; the callee gets its own.
						ub = bytes.Clone(b)
					}
					r.callRaw(shard, string(raw.EventType), ub)
				}
				raw.Payload = bytes.NewReader(b)
				data = raw
			}
		}
		r.client.EventManager.HandleGatewayEvent(g, t, seq, data)
		return
	}

	r.client.EventManager.HandleGatewayEvent(g, t, seq, data)
	switch d := data.(type) {
	case gateway.EventReady:
		ids := make([]snowflake.ID, len(d.Guilds))
		for i, g := range d.Guilds {
			ids[i] = g.ID
		}
		r.track.readyEvent(shard, seq, d.SessionID, d.ResumeGatewayURL, ids)
	case gateway.EventResumed:
		r.track.handled(shard, seq)
		r.track.resumedEvent(shard)
	case gateway.EventGuildCreate:
		r.track.guildEvent(shard, seq, d.ID, guildCreated)
	case gateway.EventGuildDelete:
		change := guildRemoved
		if d.Unavailable {
			change = guildUnavailable
		}
		r.track.guildEvent(shard, seq, d.ID, change)
	default:
		r.track.handled(shard, seq)
	}
}

// readPayload copies a raw event's payload. disgo hands a *bytes.Reader,
// whose size is known, so the copy is one allocation of the right size.
func readPayload(rd io.Reader) ([]byte, error) {
	if br, ok := rd.(*bytes.Reader); ok {
		b := make([]byte, br.Len())
		_, err := io.ReadFull(br, b)
		return b, err
	}
	return io.ReadAll(rd)
}

func (r *runner) callRaw(shard int, eventType string, b []byte) {
	defer r.recoverCallback("OnRawEvent")
	r.o.OnRawEvent(shard, eventType, b)
}

// stop closes the cluster resumably: no shard is closed with 1000, and each
// shard's last handled sequence is saved before Run returns.
func (r *runner) stop(ctx context.Context, w Worker, bg *loops, reason error) error {
	start := time.Now()
	deadline := start.Add(r.o.StopTimeout)
	r.log.Info("cluster stopping resumably")
	r.reopen.shutdown()
	r.track.stop()
	if err := clusterhash.SetStatus(context.WithoutCancel(ctx), r.rdb, r.ks, r.o.ID, clusterhash.StatusStopping).Err(); err != nil {
		r.log.Warn("cluster: could not record stopping", slog.Any("error", err))
	}
	// Shards still opening. One that IDENTIFYs has no session to lose, so
	// cancel it now; one that RESUMEs gets until the deadline to finish, so
	// it can be closed resumably below.
	for _, op := range r.opens {
		if !op.resuming {
			op.cancel()
		}
	}
	if r.limiter != nil {
		// A resume that failed falls back to IDENTIFY; it must not take a
		// bucket now either.
		r.limiter.Close(ctx)
	}
	for id, op := range r.opens {
		if !waitClosed(op.done, time.Until(deadline)) {
			r.log.Warn("cluster: shard still resuming at the stop deadline; its session may be lost",
				slog.Int("shard_id", id))
			op.cancel()
		}
	}
	for _, op := range r.opens {
		// A cancelled open returns after disgo's own 5 s close timeout at most.
		waitClosed(op.done, 6*time.Second)
	}

	// 1012 (service restart) keeps the session resumable; Close would send
	// 1000, which ends it.
	var wg sync.WaitGroup
	for _, id := range r.ids {
		g := r.sm.Shard(id)
		if g == nil {
			continue
		}
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			g.CloseWithCode(cctx, websocket.CloseServiceRestart, "cluster stopping")
		})
	}
	wg.Wait()

	// Listeners still running finish their event before its sequence counts.
	tick := time.NewTicker(5 * time.Millisecond)
	for r.track.inFlight() && time.Now().Before(deadline) {
		<-tick.C
	}
	tick.Stop()
	if r.track.inFlight() {
		r.log.Warn("cluster: event handlers still running at the stop deadline; their events will be replayed")
	}

	status := "stopped"
	if reason != nil {
		status = "failed"
	}
	r.finish(ctx, bg, status)
	// No event arrives any more: write what the projection still holds
	// and stop its writer.
	r.sh.closeProjector(ctx, r.o.StopTimeout, r.log)

	if s, ok := w.(Shutdowner); ok {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.o.StopTimeout)
		err := r.shutdown(sctx, s)
		cancel()
		if err != nil {
			r.log.Error("cluster: Shutdown failed", slog.Any("error", err))
			if reason == nil {
				reason = err
			}
		}
	}
	// Last, so Shutdown can still call other processes.
	r.sh.close(ctx, r.o.StopTimeout, r.log)
	r.log.Info("cluster stopped", slog.Duration("took", time.Since(start)))
	return reason
}

// finish stops the background loops, writes the final sessions, statuses
// and events, and removes the heartbeat.
func (r *runner) finish(ctx context.Context, bg *loops, status string) {
	r.reopen.shutdown()
	r.track.stop()
	bg.stopWork()
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.o.StopTimeout)
	defer cancel()
	var err error
	for attempt := range 3 {
		if err = r.flush(fctx, true); err == nil {
			break
		}
		r.log.Warn("cluster: final save failed", slog.Int("attempt", attempt+1), slog.Any("error", err))
		select {
		case <-fctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	bg.stopBeat()
	pipe := r.rdb.Pipeline()
	clusterhash.SetStopped(fctx, pipe, r.ks, r.o.ID, status, time.Now())
	pipe.Del(fctx, r.ks.ClusterHeartbeat(r.o.ID))
	if _, err := pipe.Exec(fctx); err != nil {
		r.log.Warn("cluster: could not record the stop", slog.Any("error", err))
	}
}

func (r *runner) shutdown(ctx context.Context, s Shutdowner) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("cluster: Shutdown panicked: %v", p)
		}
	}()
	return s.Shutdown(ctx)
}

func waitClosed(ch <-chan struct{}, d time.Duration) bool {
	if d <= 0 {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	}
}

func setOf(ids []int) map[int]struct{} {
	m := make(map[int]struct{}, len(ids))
	for _, id := range ids {
		m[id] = struct{}{}
	}
	return m
}
