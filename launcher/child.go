package launcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/disgoorg/disgo/gateway"
	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/cluster"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/leases"
	"github.com/megane-go/megane/redisconn"
	"github.com/megane-go/megane/redisipc"
	"github.com/megane-go/megane/services"
	"github.com/megane-go/megane/sessions"
	"github.com/megane-go/megane/shardmap"
	"github.com/megane-go/megane/stats"
)

// ExitRedisUnavailable is the exit status of a cluster or service process
// that stopped because Redis failed (EX_TEMPFAIL of sysexits.h). The
// launcher does not count such an exit as a crash: it respawns the process
// once its own writes to Redis go through again.
const ExitRedisUnavailable = 75

// childExit ends a child whose run failed because Redis was failing with
// ExitRedisUnavailable, and returns any other result to Run's caller.
func (l *Launcher) childExit(err error) error {
	if errors.Is(err, errLeaseLost) {
		l.log.Error("stopped: the lease is no longer this process's", slog.String("role", string(l.role)),
			slog.Int("exit_status", ExitLeaseLost), slog.Any("error", err))
		os.Exit(ExitLeaseLost)
	}
	if err == nil || !redisconn.IsOutage(err) {
		return err
	}
	l.log.Error("stopping: Redis is failing; the launcher respawns this process once Redis works",
		slog.String("role", string(l.role)), slog.Int("exit_status", ExitRedisUnavailable), slog.Any("error", err))
	os.Exit(ExitRedisUnavailable)
	return err
}

// childContext ends on SIGINT/SIGTERM and when the launcher that spawned
// this process is gone. Pdeathsig covers the second on Linux, except when
// the launcher died between fork and the child's first instruction; the
// parent-pid poll covers that and other systems.
func childContext(ctx context.Context) (context.Context, context.CancelFunc) {
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	parent, err := strconv.Atoi(os.Getenv(envParentPID))
	if err != nil || parent <= 0 {
		return ctx, stop
	}
	ctx, cancel := context.WithCancel(ctx)
	go func() {
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			if os.Getppid() != parent {
				cancel()
				return
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return ctx, func() { cancel(); stop() }
}

// readyNotifier returns the function that tells the launcher this child is
// ready, by writing a line on the pipe it passed as MEGANE_READY_FD. It is a
// no-op in a child started by hand.
func readyNotifier(log *slog.Logger) func() {
	fd, err := strconv.Atoi(os.Getenv(envReadyFD))
	if err != nil || fd < 0 {
		return func() {}
	}
	f := os.NewFile(uintptr(fd), "megane-ready")
	if f == nil {
		return func() {}
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			if _, err := f.WriteString(readyLine + "\n"); err != nil {
				log.Warn("cannot report ready to the launcher", slog.Any("error", err))
			}
			_ = f.Close()
		})
	}
}

// childRedis returns the Redis of a child: Config.Redis, or one opened from
// the URL the launcher passed. The returned func closes what was opened.
func (l *Launcher) childRedis(ctx context.Context) (redis.UniversalClient, keyspace.Keyspace, func(), error) {
	ks, err := keyspace.New(l.cfg.Namespace)
	if err != nil {
		return nil, ks, nil, fmt.Errorf("launcher: %s: %w", envNamespace, err)
	}
	if l.cfg.Redis != nil {
		return l.cfg.Redis, ks, func() {}, nil
	}
	if l.cfg.RedisURL == "" {
		return nil, ks, nil, fmt.Errorf("%w: %s is not set in a %s process", ErrInvalidConfig, envRedisURL, l.role)
	}
	rdb, err := redisconn.Open(ctx, l.cfg.RedisURL)
	if err != nil {
		return nil, ks, nil, fmt.Errorf("launcher: %w", err)
	}
	return rdb, ks, func() { _ = rdb.Close() }, nil
}

func envInt(name string) (int, error) {
	v := os.Getenv(name)
	n, err := strconv.Atoi(v)
	if err != nil {
		return 0, fmt.Errorf("%w: %s=%q is not an integer", ErrInvalidConfig, name, v)
	}
	return n, nil
}

// runCluster is Run in a cluster process.
func (l *Launcher) runCluster(ctx context.Context) error {
	id, err := envInt(envClusterID)
	if err != nil {
		return err
	}
	shards, err := shardmap.ParseRanges(os.Getenv(envClusterShards))
	if err != nil {
		return fmt.Errorf("%w: %s: %w", ErrInvalidConfig, envClusterShards, err)
	}
	if l.cfg.Shards <= 0 {
		return fmt.Errorf("%w: %s is not set in a cluster process", ErrInvalidConfig, envShards)
	}
	for _, s := range shards {
		if s >= l.cfg.Shards {
			return fmt.Errorf("%w: shard %d of %s is not below %s=%d", ErrInvalidConfig, s, envClusterShards, envShards, l.cfg.Shards)
		}
	}
	log := l.log // cluster.Run adds cluster_id itself
	ctx, stop := childContext(ctx)
	defer stop()
	rdb, ks, closeRedis, err := l.childRedis(ctx)
	if err != nil {
		return err
	}
	defer closeRedis()
	ctx, guard, err := guardLease(ctx, rdb, ks, leases.ClusterName(id), log)
	if err != nil {
		return err
	}

	ready := readyNotifier(log)
	opts := cluster.Options{
		ID:                id,
		ShardIDs:          shards,
		ShardCount:        l.cfg.Shards,
		MaxConcurrency:    l.cfg.MaxConcurrency,
		Token:             l.cfg.Token,
		RESTURL:           l.cfg.RESTURL,
		GatewayURL:        l.cfg.GatewayURL,
		Intents:           l.cfg.Intents,
		IdentifyWindow:    l.cfg.IdentifyWindow,
		IdentifyReserve:   l.cfg.IdentifyReserve,
		Redis:             rdb,
		Keys:              ks,
		Logger:            log,
		HeartbeatInterval: l.cfg.HeartbeatInterval,
		OnReady:           ready,
		Stats:             stats.Options{Interval: l.cfg.StatsInterval},
		IPC:               redisipc.Options{Eval: l.cfg.evalLimits(RoleCluster)},
		Fence:             guard.Token(),
	}
	if l.cfg.ClusterOptions != nil {
		l.cfg.ClusterOptions(&opts)
		if user := opts.OnReady; user != nil {
			opts.OnReady = func() { user(); ready() }
		} else {
			opts.OnReady = ready
		}
	}
	if guard != nil {
		opts.GatewayOptions = append(opts.GatewayOptions, gateway.WithDialer(guard.dialer()))
	}
	if os.Getenv(envStandby) != "" {
		// A re-shard's new generation: its records go to the staging
		// keyspace, its identifies spend the live bot's budget.
		opts.Standby, opts.IdentifyKeys, opts.Keys = true, ks, ks.Reshard()
	}
	log.Info("cluster process starting", slog.Int("cluster_id", id), slog.String("shards", shardmap.FormatRanges(shards)),
		slog.Int("shard_count", l.cfg.Shards), slog.Int("pid", os.Getpid()))
	err = cluster.Run(ctx, opts, l.cfg.Worker)
	if guard.Lost() || sessions.IsFenced(err) {
		return fmt.Errorf("launcher: cluster %d: %w", id, errors.Join(errLeaseLost, err))
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("launcher: cluster %d: %w", id, err)
	}
	return nil
}

// runService is Run in a service process.
func (l *Launcher) runService(ctx context.Context) (err error) {
	name := os.Getenv(envService)
	spec, ok := l.cfg.Services[name]
	if !ok {
		return fmt.Errorf("%w: %s=%q is not in Config.Services", ErrInvalidConfig, envService, name)
	}
	copyN, err := envInt(envServiceCopy)
	if err != nil {
		return err
	}
	log := l.log // services.Run adds service and copy itself
	ctx, stop := childContext(ctx)
	defer stop()
	rdb, ks, closeRedis, err := l.childRedis(ctx)
	if err != nil {
		return err
	}
	defer closeRedis()
	ctx, guard, err := guardLease(ctx, rdb, ks, leases.ServiceName(name, copyN), log)
	if err != nil {
		return err
	}
	defer func() {
		if guard.Lost() {
			err = fmt.Errorf("launcher: service %s#%d: %w", name, copyN, errLeaseLost)
		}
	}()
	timeout := spec.ReadyTimeout
	if timeout == 0 {
		timeout = DefaultServiceReadyTimeout
	}
	err = services.Run(ctx, services.Options{
		Name:   name,
		Copy:   copyN,
		Redis:  rdb,
		Keys:   ks,
		Logger: log,
		Stats:  stats.Options{Interval: l.cfg.StatsInterval},
		// The launcher's watchdog reads the copy's IPC registration as its
		// heartbeat, with the clusters' TTL of three intervals.
		IPC: redisipc.Options{HeartbeatTTL: l.heartbeatTTL(),
			Eval: l.cfg.evalLimits(RoleService)},
		ReadyTimeout: timeout,
		OnReady:      readyNotifier(log),
	}, spec.Worker)
	if err != nil && !errors.Is(err, context.Canceled) {
		return fmt.Errorf("launcher: service %s#%d: %w", name, copyN, err)
	}
	return nil
}
