package launcher

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/cache"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/redisipc"
	"github.com/megane-go/megane/stats"
	"github.com/megane-go/megane/store"
)

// Handles are the launcher process's way into the bot's shared state: the
// same handles a service gets in *services.Service, for the code that
// Megane ran in its master (aggregating statistics, reacting to events,
// calling clusters and services). Config.OnStart receives them, and
// Launcher.Handles returns them while the launcher runs. They work for as
// long as the launcher runs, the demo's embedded Redis included.
type Handles struct {
	// IPC is the launcher's node, address "launcher": call clusters and
	// services (services.Call, Gather, Eval), or Handle ops of your own
	// next to the launcher's.
	IPC *redisipc.Node
	// Store is the central store.
	Store *store.Store
	// Cache reads the Redis projection of the bot's guilds, channels,
	// roles, members and users.
	Cache *cache.Reader
	// Fetch gets guilds, channels, users, members and roles from the
	// projection, or from the cluster that owns the guild.
	Fetch *cache.Fetcher
	// Stats is the launcher's own statistics reporter ("launcher"); add
	// fields with Stats.Add, such as bot-wide totals.
	Stats *stats.Reporter
	// Redis is the shared client (the embedded Redis's in demo mode).
	Redis redis.UniversalClient
	// Keys is the bot's key schema.
	Keys keyspace.Keyspace
	// Logger is the launcher's logger.
	Logger *slog.Logger
}

// BotStats returns the latest statistics of every process of the bot,
// typed and grouped by role (stats.ReadBot).
func (h *Handles) BotStats(ctx context.Context) (stats.Bot, error) {
	return stats.ReadBot(ctx, h.Redis, h.Keys, 0)
}

// Handles returns the launcher process's handles into the bot's shared
// state, once Run has started the fleet and until it stops: ErrNotLauncher
// in a cluster or service process (they have *cluster.Cluster and
// *services.Service), ErrNotRunning before the start and after the stop.
func (l *Launcher) Handles() (*Handles, error) {
	if l.role != RoleLauncher {
		return nil, ErrNotLauncher
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.running {
		return nil, ErrNotRunning
	}
	return l.handles, nil
}

// buildHandles is called by start once the IPC node and the reporter
// exist.
func (l *Launcher) buildHandles(node *redisipc.Node, rep *stats.Reporter) error {
	fetch, err := cache.NewFetcher(cache.FetcherConfig{Redis: l.rdb, Keys: l.ks, Requester: node, Logger: l.log})
	if err != nil {
		return fmt.Errorf("launcher: %w", err)
	}
	l.handles = &Handles{
		IPC: node, Store: store.New(l.rdb, l.ks), Cache: fetch.Reader(), Fetch: fetch, Stats: rep,
		Redis: l.rdb, Keys: l.ks, Logger: l.log,
	}
	return nil
}

// runOnStart calls Config.OnStart in its own goroutine, so that supervision
// never waits for it, and returns a function that waits (at most
// ShutdownTimeout, once ctx ended) for it to return before the handles are
// closed.
func (l *Launcher) runOnStart(ctx context.Context) (wait func()) {
	if l.cfg.OnStart == nil {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer func() {
			if p := recover(); p != nil {
				l.log.Error("launcher: OnStart panicked", slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
			}
		}()
		l.cfg.OnStart(ctx, l.handles)
	}()
	return func() {
		select {
		case <-done:
		case <-time.After(l.cfg.ShutdownTimeout):
			l.log.Warn("launcher: OnStart did not return within the shutdown timeout after the stop began")
		}
	}
}
