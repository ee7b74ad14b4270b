package services_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/internal/testwait"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/redisipc"
	"github.com/megane-go/megane/services"
	"github.com/megane-go/megane/stats"
)

type counter struct {
	launched  atomic.Bool
	shutdown  atomic.Bool
	handled   atomic.Int64
	launchFor time.Duration
}

type addIn struct{ A, B int }

func (c *counter) Launch(ctx context.Context, s *services.Service) error {
	select {
	case <-time.After(c.launchFor):
	case <-ctx.Done():
		return ctx.Err()
	}
	if s.Cache == nil || s.Fetch == nil || s.Stats == nil || s.Store == nil || s.IPC == nil {
		return errors.New("Service is missing a field")
	}
	c.launched.Store(true)
	return nil
}

func (c *counter) HandleCommand(ctx context.Context, s *services.Service, cmd services.Command) (any, error) {
	c.handled.Add(1)
	switch cmd.Op {
	case "add":
		var in addIn
		if err := cmd.Decode(&in); err != nil {
			return nil, err
		}
		return map[string]int{"sum": in.A + in.B, "copy": s.Copy}, nil
	case "zero":
		return 0, nil
	case "store":
		n, err := s.Store.Bucket("svc").Incr(ctx, "calls", 1)
		return n, err
	}
	return nil, fmt.Errorf("%w: %s", redisipc.ErrUnknownOp, cmd.Op)
}

func (c *counter) Shutdown(ctx context.Context) error { c.shutdown.Store(true); return nil }

func (c *counter) Stats(ctx context.Context) map[string]any {
	return map[string]any{"handled_here": c.handled.Load()}
}

var fastIPC = redisipc.Options{BlockTimeout: 100 * time.Millisecond, HeartbeatTTL: 600 * time.Millisecond,
	DirectoryRefresh: 100 * time.Millisecond}

func TestRunCallStatsShutdown(t *testing.T) {
	_, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("unit")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()

	workers := make([]*counter, 3)
	ready := make(chan int, 3)
	var wg sync.WaitGroup
	for i := range workers {
		workers[i] = &counter{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			err := services.Run(ctx, services.Options{Name: "math", Copy: i, Redis: rdb, Keys: ks,
				IPC: fastIPC, OnReady: func() { ready <- i }}, workers[i])
			if err != nil {
				t.Errorf("Run copy %d: %v", i, err)
			}
		}()
	}
	for range workers {
		select {
		case <-ready:
		case <-time.After(5 * time.Second):
			t.Fatal("copies not ready")
		}
	}
	cli, err := redisipc.New(ctx, redisipc.Options{Redis: rdb, Keys: ks, Addr: "cli:t",
		BlockTimeout: 100 * time.Millisecond, DirectoryRefresh: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close(context.Background())

	cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
	defer ccancel()
	var out struct{ Sum, Copy int }
	for i := range 30 {
		if err := services.Call(cctx, cli, "math", "add", addIn{i, 1}, &out); err != nil || out.Sum != i+1 {
			t.Fatalf("add: %+v, %v", out, err)
		}
	}
	var zero = -1
	if err := services.Call(cctx, cli, "math", "zero", nil, &zero); err != nil || zero != 0 {
		t.Fatalf("zero: %d, %v", zero, err)
	}
	if err := services.Call(cctx, cli, "math", "nope", nil, nil); !errors.Is(err, redisipc.ErrUnknownOp) {
		t.Fatalf("unknown command: %v, want ErrUnknownOp", err)
	}
	if err := services.Call(cctx, cli, "math", "store", nil, nil); err != nil {
		t.Fatal(err)
	}
	if err := services.Call(cctx, cli, "absent", "add", nil, nil); !errors.Is(err, redisipc.ErrNoResponders) {
		t.Fatalf("absent service: %v, want ErrNoResponders", err)
	}

	// Discovery: every copy answers ping and stats by itself.
	g, err := cli.Gather(cctx, "service:math", redisipc.OpPing, nil)
	if err != nil || len(g.Answers) != 3 || len(g.Missing) != 0 {
		t.Fatalf("ping: %+v, %v", g, err)
	}
	g, err = cli.Gather(cctx, redisipc.TargetServices, redisipc.OpStats, nil)
	if err != nil || len(g.Answers) != 3 {
		t.Fatalf("stats: %+v, %v", g, err)
	}
	var total int64
	for _, a := range g.Answers {
		var st redisipc.StatsReply
		if err := a.Decode(&st); err != nil || st.Version != redisipc.StatsVersion || st.Fields["service"] != "math" || st.Cluster != nil {
			t.Fatalf("stats answer %s: %+v, %v", a.Instance, st, err)
		}
		handled, _ := st.Fields["handled_here"].(float64)
		total += int64(handled)
	}
	if total != 33 {
		t.Fatalf("copies handled %d commands in all, want 33", total)
	}

	// Every copy publishes its statistics under its own name.
	for i := range workers {
		key := ks.Stats(fmt.Sprintf("service:math:%d", i))
		testwait.For(t, 5*time.Second, "statistics in "+key, func() bool { return rdb.HGet(ctx, key, "pid").Val() != "" })
	}

	cancel()
	wg.Wait()
	for i, w := range workers {
		if !w.shutdown.Load() {
			t.Errorf("copy %d: Shutdown not called", i)
		}
	}
}

func TestReadyTimeout(t *testing.T) {
	_, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("unit")
	start := time.Now()
	err := services.Run(context.Background(), services.Options{Name: "slow", Redis: rdb, Keys: ks,
		ReadyTimeout: 100 * time.Millisecond, IPC: fastIPC}, &counter{launchFor: time.Hour})
	if !errors.Is(err, services.ErrReadyTimeout) {
		t.Fatalf("Run = %v, want ErrReadyTimeout", err)
	}
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("ready timeout took %v", el)
	}
	// A copy that never got ready was never advertised.
	nodes, err := redisipc.LiveNodes(context.Background(), rdb, ks)
	if err != nil || len(nodes) != 0 {
		t.Fatalf("LiveNodes = %+v, %v", nodes, err)
	}
}

func TestBadOptions(t *testing.T) {
	if err := services.Run(context.Background(), services.Options{}, &counter{}); !errors.Is(err, services.ErrInvalidOptions) {
		t.Fatalf("Run = %v, want ErrInvalidOptions", err)
	}
}

// ticker is a Worker whose Launch starts a setInterval-style loop with its
// context and returns at once.
type ticker struct {
	ticks   atomic.Int64
	stopped chan struct{}
}

func (w *ticker) Launch(ctx context.Context, s *services.Service) error {
	go func() {
		defer close(w.stopped)
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				w.ticks.Add(1)
			}
		}
	}()
	return nil
}

func (w *ticker) HandleCommand(ctx context.Context, s *services.Service, cmd services.Command) (any, error) {
	return nil, fmt.Errorf("%w: %s", redisipc.ErrUnknownOp, cmd.Op)
}

// The context Launch gets used to end the moment Launch returned, so a loop
// started there died at once. It lives until the copy stops.
func TestLaunchContextLivesUntilStop(t *testing.T) {
	_, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("unit")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w := &ticker{stopped: make(chan struct{})}
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() {
		done <- services.Run(ctx, services.Options{Name: "tick", Redis: rdb, Keys: ks, IPC: fastIPC,
			ReadyTimeout: 50 * time.Millisecond, OnReady: func() { close(ready) }}, w)
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run = %v before ready", err)
	case <-time.After(5 * time.Second):
		t.Fatal("not ready")
	}
	// Well past the ready timeout, the loop still ticks.
	past := time.Now().Add(150 * time.Millisecond)
	testwait.Problems(t, 5*time.Second, "10 ticks and 150ms of the copy's loop", func() []string {
		n := w.ticks.Load()
		select {
		case <-w.stopped:
			t.Fatalf("the loop stopped after %d ticks while the copy runs", n)
		default:
		}
		if time.Now().After(past) && n >= 10 {
			return nil
		}
		return []string{fmt.Sprintf("%d ticks", n)}
	})
	cancel()
	select {
	case <-w.stopped:
	case <-time.After(5 * time.Second):
		t.Fatal("the loop outlived the copy")
	}
	if err := <-done; err != nil {
		t.Fatalf("Run = %v", err)
	}
}

// statser reports through both ways a service has: a Statser, and a field
// added with Stats.Add in Launch.
type statser struct{}

func (w *statser) Launch(ctx context.Context, s *services.Service) error {
	return s.Stats.Add("queue_depth", func(context.Context) any { return 3 })
}

func (w *statser) HandleCommand(ctx context.Context, s *services.Service, cmd services.Command) (any, error) {
	return nil, fmt.Errorf("%w: %s", redisipc.ErrUnknownOp, cmd.Op)
}

func (w *statser) Stats(ctx context.Context) map[string]any {
	return map[string]any{"lookups": 12, "hit_ratio": 0.75, "region": "eu"}
}

// A Worker's Statser used to reach only the "$stats" IPC answer, never the
// published statistics (stats.ReadAll, megane-cli stats); Stats.Add fields
// only the latter. Both now go through the reporter and show everywhere,
// typed.
func TestStatserAndAddShowEverywhere(t *testing.T) {
	_, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("unit")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() {
		done <- services.Run(ctx, services.Options{Name: "lookup", Copy: 1, Redis: rdb, Keys: ks, IPC: fastIPC,
			Stats: stats.Options{Interval: 20 * time.Millisecond}, OnReady: func() { close(ready) }}, &statser{})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run = %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("not ready")
	}
	want := map[string]any{"lookups": int64(12), "hit_ratio": 0.75, "region": "eu", "queue_depth": int64(3),
		"service": "lookup", "copy": int64(1)}
	testwait.Problems(t, 5*time.Second, "the published statistics", func() []string {
		rep, err := stats.Read(ctx, rdb, ks, "service:lookup:1")
		if err != nil {
			return []string{err.Error()}
		}
		var missing []string
		for k, v := range want {
			if rep.Fields[k] != v {
				missing = append(missing, fmt.Sprintf("%s=%#v (want %#v)", k, rep.Fields[k], v))
			}
		}
		return missing
	})

	cli, err := redisipc.New(ctx, redisipc.Options{Redis: rdb, Keys: ks, Addr: "cli:t",
		BlockTimeout: 100 * time.Millisecond, DirectoryRefresh: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close(context.Background())
	cctx, ccancel := context.WithTimeout(ctx, 10*time.Second)
	defer ccancel()
	answer, err := cli.StatsOf(cctx, "service:lookup")
	if err != nil {
		t.Fatal(err)
	}
	if answer.Version != redisipc.StatsVersion || answer.Addr != "service:lookup" {
		t.Errorf("$stats = %+v", answer)
	}
	for k, v := range map[string]any{"lookups": 12.0, "hit_ratio": 0.75, "region": "eu", "queue_depth": 3.0, "service": "lookup", "copy": 1.0} {
		if answer.Fields[k] != v {
			t.Errorf("$stats %s = %#v, want %#v", k, answer.Fields[k], v)
		}
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
}
