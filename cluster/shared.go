package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/megane-go/megane/cache"
	"github.com/megane-go/megane/redisipc"
	"github.com/megane-go/megane/stats"
	"github.com/megane-go/megane/store"
)

// countsTTL is how long the eval environment reuses the cluster's
// projection counts. Every eval computes every provided value, so without
// it one expression would read the counts once per count it could mention;
// it is short enough that an eval never sees counts older than the eval
// before it.
const countsTTL = 100 * time.Millisecond

// evalCountTimeout bounds the Redis reads behind one evaluated value.
const evalCountTimeout = 2 * time.Second

// shared is what the cluster shares with the rest of the bot: its IPC
// node, the store, the projection (reader, projector, fetcher, owner
// lookups) and its statistics.
type shared struct {
	node    *redisipc.Node
	store   *store.Store
	reader  *cache.Reader
	proj    *cache.Projector // nil with DisableCache
	fetcher *cache.Fetcher
	owners  *cache.OwnerMux
	rep     *stats.Reporter

	// ownerFetch is the FetchOp handler, also called in-process for
	// fetches this cluster would otherwise send to itself.
	ownerFetch func(ctx context.Context, payload []byte) ([]byte, error)
	// ownerFetches counts FetchOp requests answered, ownerErrors those
	// that failed. ownerREST counts the REST calls owner lookups made (for
	// FetchOp and for Fetch's fallback), ownerCached the lookups the
	// owner's REST cache answered instead.
	ownerFetches, ownerErrors atomic.Int64
	ownerREST, ownerCached    atomic.Int64

	countsMu sync.Mutex
	counts   shardCounts
	countsAt time.Time
}

// attach creates the cluster's node (held: it serves once Launch returned),
// projector, reader, fetcher, owner lookups and statistics reporter, and
// fills them into c.
func (r *runner) attach(ctx context.Context, c *Cluster) error {
	o := r.o
	sh := &shared{store: store.New(r.rdb, r.ks), reader: cache.NewReader(r.rdb, r.ks)}

	if !o.DisableCache {
		cfg := cache.Config{}
		if o.Cache != nil {
			cfg = *o.Cache
		}
		if cfg.Redis == nil {
			cfg.Redis = r.rdb
		}
		if cfg.Keys.Namespace() == "" {
			cfg.Keys = r.ks
		}
		if cfg.Logger == nil {
			cfg.Logger = r.log
		}
		p, err := cache.NewProjector(cfg)
		if err != nil {
			if errors.Is(err, cache.ErrConfig) {
				return fmt.Errorf("%w: Cache: %w", ErrInvalidOptions, err)
			}
			return fmt.Errorf("cluster: cache projector: %w", err)
		}
		sh.proj = p
	}

	no := o.IPC
	no.Redis, no.Keys, no.Addr, no.Hold = r.rdb, r.ks, redisipc.ClusterAddr(o.ID), true
	if no.Logger == nil {
		no.Logger = r.log
	}
	node, err := redisipc.New(ctx, no)
	if err != nil {
		sh.closeProjector(ctx, r.o.StopTimeout, r.log)
		return fmt.Errorf("cluster: IPC node: %w", err)
	}
	sh.node = node

	src := clientSource{client: r.client, rest: &sh.ownerREST, cached: &sh.ownerCached}
	if o.OwnerCacheTTL > 0 {
		src.cache = newRESTCache(o.OwnerCacheTTL, o.OwnerCacheSize)
	}
	sh.owners = cache.NewOwnerMux(src)
	h := cache.OwnerHandler(sh.owners)
	sh.ownerFetch = func(ctx context.Context, payload []byte) (out []byte, err error) {
		defer func() {
			// Also called in-process by Fetch, where no IPC handler
			// would recover a panic of a user's OwnerSource.
			if p := recover(); p != nil {
				out, err = nil, fmt.Errorf("cluster: owner lookup panicked: %v", p)
			}
			sh.ownerFetches.Add(1)
			if err != nil {
				sh.ownerErrors.Add(1)
			}
		}()
		return h(ctx, payload)
	}
	node.Handle(cache.FetchOp, func(ctx context.Context, req *redisipc.Request) ([]byte, error) {
		return sh.ownerFetch(ctx, req.Payload)
	})
	f, err := cache.NewFetcher(cache.FetcherConfig{
		Redis: r.rdb, Keys: r.ks,
		Requester: localRequester{addr: node.Addr(), local: sh.ownerFetch, remote: node},
		Fallback:  sh.owners,
		Logger:    r.log,
	})
	if err != nil {
		sh.close(ctx, r.o.StopTimeout, r.log)
		return fmt.Errorf("cluster: fetcher: %w", err)
	}
	sh.fetcher = f

	so := o.Stats
	if so.Logger == nil {
		so.Logger = r.log
	}
	sh.rep = stats.NewReporter(r.rdb, r.ks, node.Addr(), so)

	r.sh = sh
	r.exposeEval(node.EvalEnv())
	r.addStats(sh.rep)
	// The "$stats" answer carries the reporter's fields too (Stats.Add),
	// so both ways of asking a cluster show the same figures.
	node.SetStats(func(ctx context.Context) map[string]any {
		out := sh.rep.Custom(ctx)
		maps.Copy(out, r.nodeStats(ctx))
		return out
	})

	c.IPC, c.Store, c.Cache, c.Fetch, c.Owners, c.Stats = node, sh.store, sh.reader, f, sh.owners, sh.rep
	return nil
}

// closeProjector writes what the projector holds and stops it, bounded by
// d. Closing twice is harmless.
func (sh *shared) closeProjector(ctx context.Context, d time.Duration, log *slog.Logger) {
	if sh.proj == nil {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d)
	defer cancel()
	if err := sh.proj.Close(cctx); err != nil {
		log.Warn("cluster: cache projector did not drain; the next READY or GUILD_CREATE repairs the projection",
			slog.Any("error", err))
	}
}

// close stops the projector and the node, each bounded by d. It is safe to
// call more than once.
func (sh *shared) close(ctx context.Context, d time.Duration, log *slog.Logger) {
	sh.closeProjector(ctx, d, log)
	if sh.node == nil {
		return
	}
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d)
	defer cancel()
	if err := sh.node.Close(cctx); err != nil {
		log.Warn("cluster: closing the IPC node", slog.Any("error", err))
	}
}

// flushProjection waits until every event enqueued so far is in Redis, so
// a session saved afterwards never points past what the projection holds:
// a crash then replays (at-least-once) instead of losing projected events.
func (sh *shared) flushProjection(ctx context.Context, d time.Duration) error {
	if sh == nil || sh.proj == nil {
		return nil
	}
	fctx, cancel := context.WithTimeout(ctx, d)
	defer cancel()
	if err := sh.proj.Flush(fctx); err != nil {
		return fmt.Errorf("cache projection flush: %w", err)
	}
	return nil
}

// localRequester sends fetches to owning clusters over IPC, except those
// addressed to this cluster, which it answers in-process.
type localRequester struct {
	addr   string
	local  func(ctx context.Context, payload []byte) ([]byte, error)
	remote cache.Requester
}

func (l localRequester) Call(ctx context.Context, to, op string, payload []byte) ([]byte, error) {
	if to == l.addr && op == cache.FetchOp {
		return l.local(ctx, payload)
	}
	return l.remote.Call(ctx, to, op, payload)
}

// guildCounts returns the guild count of each of the cluster's shards: the
// one source of that number for every view (eval's shard_statuses and
// guilds, the statistics, the shard status hashes). With the projection it
// is the size of the shard's guild set in Redis, which outlives the
// process, so a shard that RESUMEd (and got no READY) counts right at once;
// without it, the tracker's count, which a resumed shard takes from its
// saved session. -1 marks a count that is unknown.
func (r *runner) guildCounts(ctx context.Context) (map[int]int64, error) {
	if r.sh.proj == nil {
		return r.track.guildCounts(), nil
	}
	n, err := r.sh.reader.ShardGuildCounts(ctx, r.ids)
	if err != nil {
		return nil, err
	}
	return n, nil
}

// shardCounts is a snapshot of the cluster's counts, by shard.
type shardCounts struct {
	guilds  map[int]int64        // guildCounts; nil when unreadable
	byShard map[int]cache.Counts // the projection's counts; nil without one
}

// sumGuilds returns the sum of the guild counts of ids, or -1 when one
// of them is unknown.
func sumGuilds(guilds map[int]int64, ids []int) int64 {
	var sum int64
	for _, id := range ids {
		n, ok := guilds[id]
		if !ok || n < 0 {
			return -1
		}
		sum += n
	}
	return sum
}

// readCounts reads a shardCounts: with the projection, in one pipeline, so
// that the guilds and the other counts of one eval are of one moment.
func (r *runner) readCounts(ctx context.Context) shardCounts {
	if r.sh.proj == nil {
		return shardCounts{guilds: r.track.guildCounts()}
	}
	by, err := r.sh.reader.CountsByShard(ctx, r.ids)
	if err != nil {
		r.log.Debug("cluster: reading projection counts", slog.Any("error", err))
		return shardCounts{}
	}
	guilds := make(map[int]int64, len(by))
	for id, c := range by {
		guilds[id] = c.Guilds
	}
	return shardCounts{guilds: guilds, byShard: by}
}

// evalCounts is readCounts for the eval environment, reusing a result
// younger than countsTTL.
func (r *runner) evalCounts(ctx context.Context) shardCounts {
	sh := r.sh
	sh.countsMu.Lock()
	defer sh.countsMu.Unlock()
	if !sh.countsAt.IsZero() && time.Since(sh.countsAt) < countsTTL {
		return sh.counts
	}
	sh.counts = r.readCounts(ctx)
	sh.countsAt = time.Now()
	return sh.counts
}

// clusterGuilds is the number of guilds of the cluster's shards (see
// guildCounts); -1 when unknown.
func (r *runner) clusterGuilds(ctx context.Context) int64 {
	n, err := r.guildCounts(ctx)
	if err != nil {
		r.log.Debug("cluster: reading guild counts", slog.Any("error", err))
		return -1
	}
	return sumGuilds(n, r.ids)
}

// exposeEval adds the cluster's values to its eval environment. See the
// package documentation for the list.
func (r *runner) exposeEval(env *redisipc.EvalEnv) {
	started := time.Now()
	env.Set("cluster", r.o.ID)
	env.Set("shards", append([]int(nil), r.ids...))
	env.Set("shard_ids", append([]int(nil), r.ids...))
	env.Set("shard_count", r.track.shardCount)
	env.Provide("shard_statuses", func() any {
		ctx, cancel := context.WithTimeout(context.Background(), evalCountTimeout)
		defer cancel()
		counts := r.evalCounts(ctx)
		snap := r.track.snapshot()
		out := make([]map[string]any, len(snap))
		for i, s := range snap {
			guilds, ok := counts.guilds[s.ID]
			if !ok {
				guilds = -1
			}
			out[i] = map[string]any{"id": s.ID, "status": s.Status, "latency_ms": s.LatencyMS, "guilds": guilds}
		}
		return out
	})
	env.Provide("ready", func() any {
		select {
		case <-r.track.ready:
			return true
		default:
			return false
		}
	})
	env.Provide("latency_ms", func() any { return r.track.averageLatency() })
	env.Provide("uptime", func() any { return time.Since(started).Seconds() })
	env.Provide("memory", func() any {
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		return map[string]any{
			"rss_bytes": rssBytes(), "heap_alloc": m.HeapAlloc, "heap_inuse": m.HeapInuse,
			"heap_sys": m.HeapSys, "sys": m.Sys, "num_gc": m.NumGC,
		}
	})
	env.Provide("guilds", func() any {
		ctx, cancel := context.WithTimeout(context.Background(), evalCountTimeout)
		defer cancel()
		return sumGuilds(r.evalCounts(ctx).guilds, r.ids)
	})
	if r.sh.proj == nil {
		return
	}
	count := func(pick func(cache.Counts) int64) func() any {
		return func() any {
			ctx, cancel := context.WithTimeout(context.Background(), evalCountTimeout)
			defer cancel()
			var sum cache.Counts
			for _, c := range r.evalCounts(ctx).byShard {
				sum.Guilds += c.Guilds
				sum.Unavailable += c.Unavailable
				sum.Channels += c.Channels
				sum.Roles += c.Roles
				sum.Members += c.Members
				sum.Users += c.Users
			}
			return pick(sum)
		}
	}
	env.Provide("users", count(func(n cache.Counts) int64 { return n.Users }))
	env.Provide("channels", count(func(n cache.Counts) int64 { return n.Channels }))
	env.Provide("roles", count(func(n cache.Counts) int64 { return n.Roles }))
	env.Provide("members", count(func(n cache.Counts) int64 { return n.Members }))
	env.Provide("unavailable", count(func(n cache.Counts) int64 { return n.Unavailable }))
	// A function, not a value: it reads every shard's counts, which only
	// the expressions that ask for it should pay for.
	env.Set("total_counts", func() map[string]any {
		ctx, cancel := context.WithTimeout(context.Background(), evalCountTimeout)
		defer cancel()
		n, err := r.sh.reader.TotalCounts(ctx)
		if err != nil {
			return map[string]any{"error": err.Error()}
		}
		return countsMap(n)
	})
}

func countsMap(n cache.Counts) map[string]any {
	return map[string]any{
		"guilds": n.Guilds, "unavailable": n.Unavailable, "channels": n.Channels,
		"roles": n.Roles, "members": n.Members, "users": n.Users,
	}
}

// addStats registers the cluster's figures with its reporter.
func (r *runner) addStats(rep *stats.Reporter) {
	add := func(name string, c stats.Collector) {
		if err := rep.Add(name, c); err != nil {
			r.log.Warn("cluster: stats collector", slog.String("name", name), slog.Any("error", err))
		}
	}
	add("cluster", func(context.Context) any { return r.o.ID })
	add("shards", func(context.Context) any { return len(r.ids) })
	add("shard_count", func(context.Context) any { return r.track.shardCount })
	add("shards_ready", func(context.Context) any {
		n := 0
		for _, s := range r.track.snapshot() {
			if s.Status == statusReady {
				n++
			}
		}
		return n
	})
	add("guilds", func(ctx context.Context) any { return r.clusterGuilds(ctx) })
	add("latency_ms", func(context.Context) any { return r.track.averageLatency() })
	add("owner_fetches", func(context.Context) any { return r.sh.ownerFetches.Load() })
	add("owner_rest", func(context.Context) any { return r.sh.ownerREST.Load() })
	add("owner_rest_cached", func(context.Context) any { return r.sh.ownerCached.Load() })
	if p := r.sh.proj; p != nil {
		add("cache_events", func(context.Context) any { return p.Stats().Events })
		add("cache_written", func(context.Context) any { return p.Stats().Written })
		add("cache_drops", func(context.Context) any { return p.Stats().Drops })
		add("cache_queued", func(context.Context) any { return p.Stats().Queued })
	}
}

// nodeStats is merged into the node's "$stats" answer.
func (r *runner) nodeStats(ctx context.Context) map[string]any {
	out := map[string]any{
		"cluster": r.o.ID, "shards": append([]int(nil), r.ids...), "shard_count": r.track.shardCount,
		"owner_fetches": r.sh.ownerFetches.Load(), "owner_fetch_errors": r.sh.ownerErrors.Load(),
		"owner_rest": r.sh.ownerREST.Load(), "owner_rest_cached": r.sh.ownerCached.Load(),
	}
	if p := r.sh.proj; p != nil {
		st := p.Stats()
		out["cache_events"], out["cache_written"], out["cache_drops"], out["cache_queued"] =
			st.Events, st.Written, st.Drops, st.Queued
	}
	return out
}

// rssBytes reads the resident set size from /proc (Linux); 0 elsewhere.
func rssBytes() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0
	}
	pages, err := strconv.ParseUint(f[1], 10, 64)
	if err != nil {
		return 0
	}
	return pages * uint64(os.Getpagesize())
}
