// Package services runs Megane services: separate worker processes for
// central or expensive work, answering commands over IPC.
//
// A service is a Worker. The launcher spawns one or more copies of it (each
// a process calling Run); every copy reads the service's inbox through one
// consumer group, so the copies share the load, and requests a dead copy was
// holding are reclaimed by a live one. Copies answer the discovery ops
// redisipc.OpPing, OpInfo and OpStats without any code of their own.
//
// Statistics: each copy publishes one set (package stats, the process
// "service:<name>:<copy>"): the built-in process figures, service and copy,
// the fields added with Service.Stats.Add and those of the Worker's
// Statser. stats.ReadAll and megane-cli stats read them typed; the copy's
// OpStats answer (redisipc.StatsReply) carries the same user fields in its
// Fields.
//
// The context a Worker's Launch gets lives as long as the copy: it is
// cancelled when the copy begins to stop (its Run context ended, or Launch
// overran the ready timeout), never merely because Launch returned. Long
// work belongs in goroutines started from Launch with that context:
//
//	func (w *worker) Launch(ctx context.Context, s *services.Service) error {
//		go func() {
//			t := time.NewTicker(time.Minute)
//			defer t.Stop()
//			for {
//				select {
//				case <-ctx.Done():
//					return // the copy is stopping
//				case <-t.C:
//					w.refresh(ctx)
//				}
//			}
//		}()
//		return nil
//	}
//
// A cluster's Launch (package cluster) gets the same kind of context.
//
// From any node:
//
//	var out Result
//	err := services.Call(ctx, node, "twitch", "lookup", In{Name: "x"}, &out)
package services

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/cache"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/redisipc"
	"github.com/megane-go/megane/stats"
	"github.com/megane-go/megane/store"
)

// ErrReadyTimeout means the Worker's Launch did not return within
// Options.ReadyTimeout.
var ErrReadyTimeout = errors.New("services: ready timeout")

// ErrInvalidOptions is returned (wrapped) by Run for unusable Options.
var ErrInvalidOptions = errors.New("services: invalid options")

// Worker is what a service implements.
//
// A Worker may also implement Shutdowner, to release resources when the
// copy stops, and Statser, to add figures to the "$stats" answer.
type Worker interface {
	// Launch prepares the service. The copy starts taking commands when it
	// returns nil, and gives up when it has not returned within the ready
	// timeout (Options.ReadyTimeout). ctx lives as long as the copy: it
	// ends when the copy stops (or gives up), not when Launch returns, so
	// goroutines started here (a ticker, a subscription) may use it and
	// stop with the copy. A cluster's Launch gets the same kind of context.
	Launch(ctx context.Context, s *Service) error
	// HandleCommand answers one command. The result is sent back as JSON
	// (a json.RawMessage is sent as it is); an error reaches the caller as
	// a *redisipc.RemoteError. Return an error wrapping
	// redisipc.ErrUnknownOp for commands the service does not know.
	HandleCommand(ctx context.Context, s *Service, cmd Command) (any, error)
}

// Shutdowner is implemented by Workers that need to clean up when a copy
// stops. Shutdown runs after the copy stopped taking commands and finished
// the ones it had.
type Shutdowner interface {
	Shutdown(ctx context.Context) error
}

// Statser is implemented by Workers that report their own statistics.
// Its figures join the copy's statistics reporter (Service.Stats, as a
// stats.Source): they are published with the built-in ones, so
// stats.ReadAll and megane-cli stats show them with their types, and they
// are in the Fields of the copy's "$stats" answer. Service.Stats.Add is the other way to
// add figures, one at a time; both end up in the same place.
type Statser interface {
	Stats(ctx context.Context) map[string]any
}

// Service is one running copy, as its Worker sees it.
type Service struct {
	// Name is the service's name; its address is "service:<Name>".
	Name string
	// Copy numbers this copy among the service's copies, from 0.
	Copy int
	// IPC is the copy's node, for calling clusters and other services.
	IPC *redisipc.Node
	// Store is the central store.
	Store *store.Store
	// Cache reads the Redis projection of the bot's guilds, channels,
	// roles, members and users.
	Cache *cache.Reader
	// Fetch gets guilds, channels, users, members and roles from the
	// projection, or from the cluster that owns the guild when the
	// projection cannot answer.
	Fetch *cache.Fetcher
	// Stats is the copy's statistics reporter ("service:<Name>:<Copy>"),
	// publishing the built-in process figures; add your own with Stats.Add
	// (or implement Statser).
	Stats *stats.Reporter
	// Redis is the shared client.
	Redis redis.UniversalClient
	// Keys is the namespace's key schema.
	Keys keyspace.Keyspace
	// Logger is the copy's logger.
	Logger *slog.Logger
}

// Command is one command sent to a service.
type Command struct {
	// Op names the command.
	Op string
	// Payload is the command's argument, JSON when sent with Call.
	Payload []byte
	// From is the caller's address.
	From string
}

// Decode unmarshals the JSON payload into v.
func (c Command) Decode(v any) error {
	if err := json.Unmarshal(c.Payload, v); err != nil {
		return fmt.Errorf("services: decode %s payload: %w", c.Op, err)
	}
	return nil
}

// Options configures one service copy. Name, Redis and Keys are required.
type Options struct {
	// Name is the service's name.
	Name string
	// Copy numbers this copy among the service's copies; it appears in the
	// instance id and logs.
	Copy int
	// Redis is the shared client.
	Redis redis.UniversalClient
	// Keys is the namespace's key schema.
	Keys keyspace.Keyspace
	// Logger receives the copy's logs. Default: discard.
	Logger *slog.Logger
	// ReadyTimeout bounds how long Launch may take to return; past it the
	// copy stops with ErrReadyTimeout. It does not bound the context
	// Launch gets, which lives until the copy stops. Default 30 s.
	ReadyTimeout time.Duration
	// ShutdownTimeout bounds finishing running commands and Shutdown once
	// the copy is told to stop. Default 10 s.
	ShutdownTimeout time.Duration
	// OnReady is called once Launch succeeded and the copy takes commands;
	// the launcher's child side reports readiness from it.
	OnReady func()
	// IPC tunes the copy's node. Redis, Keys, Addr, Group, Hold and Logger
	// are set by Run; the rest keep redisipc's defaults when zero.
	IPC redisipc.Options
	// Stats tunes the copy's statistics reporter. Interval defaults to
	// stats.DefaultInterval, Logger to the copy's logger.
	Stats stats.Options
}

// Run runs one service copy: it launches w, serves commands until ctx
// ends, then stops taking commands, lets running ones finish and calls w's
// Shutdown. It returns nil after a clean stop.
func Run(ctx context.Context, opts Options, w Worker) error {
	if opts.Name == "" || opts.Redis == nil || opts.Keys.Namespace() == "" || w == nil {
		return fmt.Errorf("%w: Name, Redis, Keys and a Worker are required", ErrInvalidOptions)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if opts.ReadyTimeout <= 0 {
		opts.ReadyTimeout = 30 * time.Second
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 10 * time.Second
	}
	log := opts.Logger.With(slog.String("service", opts.Name), slog.Int("copy", opts.Copy))
	no := opts.IPC
	no.Redis, no.Keys, no.Addr, no.Group, no.Hold, no.Logger = opts.Redis, opts.Keys, redisipc.ServiceAddr(opts.Name), true, true, log
	if no.Instance == "" {
		no.Instance = fmt.Sprintf("service-%s-%d-%s", opts.Name, opts.Copy, randomHex(4))
	}
	node, err := redisipc.New(ctx, no)
	if err != nil {
		return fmt.Errorf("services: %s: %w", opts.Name, err)
	}
	fetch, err := cache.NewFetcher(cache.FetcherConfig{Redis: opts.Redis, Keys: opts.Keys, Requester: node, Logger: log})
	if err != nil {
		_ = node.Close(context.WithoutCancel(ctx))
		return fmt.Errorf("services: %s: %w", opts.Name, err)
	}
	so := opts.Stats
	if so.Logger == nil {
		so.Logger = log
	}
	s := &Service{Name: opts.Name, Copy: opts.Copy, IPC: node, Store: store.New(opts.Redis, opts.Keys),
		Cache: fetch.Reader(), Fetch: fetch,
		Stats: stats.NewReporter(opts.Redis, opts.Keys, fmt.Sprintf("service:%s:%d", opts.Name, opts.Copy), so),
		Redis: opts.Redis, Keys: opts.Keys, Logger: log}
	node.HandleFallback(func(ctx context.Context, req *redisipc.Request) ([]byte, error) {
		res, err := w.HandleCommand(ctx, s, Command{Op: req.Op, Payload: req.Payload, From: req.From})
		if err != nil {
			return nil, err
		}
		if raw, ok := res.(json.RawMessage); ok {
			return raw, nil
		}
		return json.Marshal(res)
	})
	// One set of figures, wherever it is read: the published hash
	// (stats.ReadAll, megane-cli stats) and the "$stats" answer both come
	// from the reporter, which the Worker's Statser feeds.
	_ = s.Stats.Add("service", func(context.Context) any { return opts.Name })
	_ = s.Stats.Add("copy", func(context.Context) any { return opts.Copy })
	_ = s.Stats.Add(redisipc.CallMetricsField, func(context.Context) any { return node.CallMetrics() })
	if st, ok := w.(Statser); ok {
		s.Stats.AddSource(st.Stats)
	}
	node.SetStats(func(ctx context.Context, out *redisipc.StatsReply) { out.Fields = s.Stats.Custom(ctx) })

	// The Worker's context: Launch gets it, and goroutines Launch starts
	// may keep it. It ends when the copy stops, for whatever reason.
	lctx, cancelLaunch := context.WithCancel(ctx)
	defer cancelLaunch()
	stopStats := func() {}
	stop := func(cause error) error {
		cancelLaunch()
		stopStats()
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opts.ShutdownTimeout)
		defer cancel()
		err := node.Close(sctx)
		if sd, ok := w.(Shutdowner); ok {
			err = errors.Join(err, sd.Shutdown(sctx))
		}
		return errors.Join(cause, err)
	}

	if err := launch(ctx, lctx, opts.ReadyTimeout, w, s); err != nil {
		return stop(fmt.Errorf("services: %s: launch: %w", opts.Name, err))
	}
	if err := node.Start(ctx); err != nil {
		return stop(fmt.Errorf("services: %s: start: %w", opts.Name, err))
	}
	statsCtx, cancelStats := context.WithCancel(context.WithoutCancel(ctx))
	statsDone := make(chan struct{})
	go func() {
		defer close(statsDone)
		s.Stats.Run(statsCtx)
	}()
	stopStats = func() { cancelStats(); <-statsDone }
	log.Info("service ready", slog.String("instance", node.Instance()))
	if opts.OnReady != nil {
		opts.OnReady()
	}
	<-ctx.Done()
	log.Info("service stopping")
	return stop(nil)
}

// launch runs Launch with lctx, which lives as long as the copy, and gives
// up after timeout. A Launch that ignores its context does not hold the
// copy past the timeout; the caller cancels lctx when the copy stops.
func launch(ctx, lctx context.Context, timeout time.Duration, w Worker, s *Service) error {
	t := time.NewTimer(timeout)
	defer t.Stop()
	done := make(chan error, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- fmt.Errorf("Launch panicked: %v", p)
			}
		}()
		done <- w.Launch(lctx, s)
	}()
	select {
	case err := <-done:
		return err
	case <-t.C:
		return fmt.Errorf("%w after %v", ErrReadyTimeout, timeout)
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Call sends the command op to service with in as JSON and unmarshals the
// answer into out (skipped when out is nil). Any copy of the service may
// answer. It does what Megane's ipc.sendCommand(service, data,
// {receptive: true}) does; Send is {receptive: false}.
func Call(ctx context.Context, node *redisipc.Node, service, op string, in, out any) error {
	return node.CallJSON(ctx, redisipc.ServiceAddr(service), op, in, out)
}

// Send sends the command op to service without waiting for an answer.
func Send(ctx context.Context, node *redisipc.Node, service, op string, in any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("services: encode %s: %w", op, err)
	}
	return node.Send(ctx, redisipc.ServiceAddr(service), op, b)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
