package cluster

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/megane-go/megane/cache"
	"github.com/megane-go/megane/redisipc"
	"github.com/megane-go/megane/stats"
	"github.com/megane-go/megane/store"
)

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
	// events counts the dispatches received, by type.
	events eventCounts

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
			if errors.Is(err, cache.ErrInvalidConfig) {
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
	node.SetStats(func(ctx context.Context, out *redisipc.StatsReply) {
		out.Fields = sh.rep.Custom(ctx)
		out.Cluster = r.nodeStats()
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
