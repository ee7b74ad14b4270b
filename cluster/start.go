package cluster

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/disgoorg/disgo"
	"github.com/disgoorg/disgo/bot"
	disgocache "github.com/disgoorg/disgo/cache"
	"github.com/disgoorg/disgo/gateway"
	"github.com/disgoorg/disgo/rest"
	"github.com/disgoorg/disgo/sharding"

	"github.com/megane-go/megane/clusterhash"
	"github.com/megane-go/megane/identify"
	"github.com/megane-go/megane/sessions"
	"github.com/megane-go/megane/shardmap"
)

type openState struct {
	cancel   context.CancelFunc
	resuming bool
	done     chan struct{}
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
	info, err := identify.LoadGatewayInfo(ctx, r.rdb, r.o.IdentifyKeys)
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
		fetched, err := identify.FetchGatewayInfo(ctx, http.DefaultClient, r.o.RESTURL, r.o.Token)
		if err != nil {
			return "", 0, 0, fmt.Errorf("cluster: %w", err)
		}
		fill(fetched)
		if !saved {
			// Nobody saved the budget yet (no launcher): keep Discord's so
			// the limiter can count session starts.
			fetched.Shards, fetched.MaxConcurrency = count, max(maxConc, 1)
			if err := identify.SaveGatewayInfo(ctx, r.rdb, r.o.IdentifyKeys, fetched); err != nil {
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
		r.limiter = identify.NewLimiter(r.rdb, r.o.IdentifyKeys, maxConc,
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
