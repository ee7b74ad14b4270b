package launcher

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"time"

	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/launcherhash"
	"github.com/megane-go/megane/lifecycle"
	"github.com/megane-go/megane/notify"
	"github.com/megane-go/megane/redisconn"
	"github.com/megane-go/megane/shardmap"
)

// start prepares everything the children need: demo backends, Redis, the
// shard plan, the keys in Redis and the session-start budget. Nothing is
// spawned when it fails, and a namespace no launcher ran in before is left
// as it was found (see dropFailedStart).
func (l *Launcher) start(ctx context.Context, cleanups *[]func()) (err error) {
	l.startedAt = time.Now()
	cfg := &l.cfg
	var demo *demo
	if cfg.Token == "" || (cfg.RedisURL == "" && cfg.Redis == nil) {
		var err error
		if demo, err = startDemo(ctx, cfg, l.log); err != nil {
			return err
		}
		*cleanups = append(*cleanups, demo.close)
	}

	l.redisURL = cfg.RedisURL
	if cfg.Redis != nil {
		l.rdb = cfg.Redis
		if err := l.rdb.Ping(ctx).Err(); err != nil {
			return fmt.Errorf("launcher: ping Config.Redis: %w", err)
		}
	} else {
		rdb, err := redisconn.Open(ctx, cfg.RedisURL)
		if err != nil {
			return fmt.Errorf("launcher: %w", err)
		}
		l.rdb = rdb
		*cleanups = append(*cleanups, func() { _ = rdb.Close() })
	}

	if cfg.Namespace == "" {
		id, _ := appIDFromToken(cfg.Token)
		cfg.Namespace = strconv.FormatUint(id, 10)
	}
	l.ks = keyspace.MustNew(cfg.Namespace) // validated, or built from digits
	ran, err := launcherhash.Exists(ctx, l.rdb, l.ks).Result()
	if err != nil {
		return fmt.Errorf("launcher: read launcher record: %w", err)
	}
	if ran == 0 {
		defer func() {
			if err != nil {
				l.dropFailedStart()
			}
		}()
	}

	if err := l.planShards(ctx); err != nil {
		return err
	}
	if err := l.settlePlan(ctx); err != nil {
		return err
	}

	identifies, err := l.checkBudget(ctx, allShards(l.shardCount))
	if err != nil {
		return err
	}

	onEvent := cfg.OnEvent
	if cfg.StatusWebhook != "" {
		hook, err := notify.NewWebhook(notify.Options{URL: cfg.StatusWebhook, Logger: l.log})
		if err != nil {
			return fmt.Errorf("%w: %s: %w", ErrInvalidConfig, envStatusWebhook, err)
		}
		*cleanups = append(*cleanups, func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_ = hook.Close(ctx)
		})
		if user := onEvent; user != nil {
			onEvent = func(ev lifecycle.Event) { user(ev); hook.Notify(ev) }
		} else {
			onEvent = hook.Notify
		}
	}
	l.sink = newSink(l.rdb, l.ks, onEvent, l.log)
	*cleanups = append(*cleanups, l.sink.close)
	l.health = newRedisHealth(healthParams{
		probe: l.probeRedis, afterProbe: l.ensureRecords,
		interval: cfg.HeartbeatInterval, logger: l.log,
	})
	l.buildProcs(identifies)
	if err := l.startIPC(ctx, cleanups); err != nil {
		return err
	}
	// Written now, not through the sink: the health probe takes a missing
	// launcher hash for a Redis that lost its keys.
	if err := launcherhash.Write(ctx, l.rdb, l.ks, l.launcherRecord(launcherhash.StatusRunning)).Err(); err != nil {
		return fmt.Errorf("launcher: write %s: %w", l.ks.Launcher(), err)
	}
	rep, stopStats := l.startStats(ctx)
	*cleanups = append(*cleanups, stopStats)
	if err := l.buildHandles(l.node, rep); err != nil {
		return err
	}
	l.startMonitor(cleanups)
	if demo != nil {
		demo.announce(l)
		*cleanups = append(*cleanups, demo.startPinger(ctx, l))
	}
	return nil
}

// dropFailedStart deletes what a start that failed wrote to a namespace no
// launcher had run in: the gateway info and the shard map. Left behind, they
// would pass for a bot (inspect.Namespaces) that never existed, and tools
// would ask which of the bots in this Redis is meant. A namespace a launcher
// ran in keeps them: they describe that bot.
func (l *Launcher) dropFailedStart() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if n, err := launcherhash.Exists(ctx, l.rdb, l.ks).Result(); err != nil || n > 0 {
		return // another launcher started meanwhile, or Redis cannot tell
	}
	// One DEL per key: on Redis Cluster they live in different slots.
	pipe := l.rdb.Pipeline()
	pipe.Del(ctx, l.ks.Gateway())
	shardmap.Delete(ctx, pipe, l.ks)
	if _, err := pipe.Exec(ctx); err != nil {
		l.log.Warn("could not remove what the failed start wrote", slog.String("namespace", l.ks.Namespace()), slog.Any("error", err))
	}
}

func (l *Launcher) buildProcs(identifies int) {
	for id, shards := range splitShards(l.shardCount, l.totalClusters) {
		p := newProc(l, kindCluster)
		p.id, p.shards, p.queued = id, shards, identifies
		l.clusters = append(l.clusters, p)
	}
	names := make([]string, 0, len(l.cfg.Services))
	for name := range l.cfg.Services {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		spec := l.cfg.Services[name]
		for c := range max(spec.Copies, 1) {
			p := newProc(l, kindService)
			p.service, p.copy = name, c
			l.services = append(l.services, p)
		}
	}
}

func (l *Launcher) all() []*proc {
	return append(slices.Clone(l.clusters), l.services...)
}
