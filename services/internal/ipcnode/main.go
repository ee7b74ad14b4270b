// Command ipcnode runs one IPC node for the redisipc integration tests: a
// service copy (through services.Run) or a cluster node, in its own
// process, so tests can share load across real processes and SIGKILL them.
//
// It prints "READY <instance>" on stdout once it serves requests, and stops
// cleanly on SIGTERM or SIGINT.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/internal/testenv"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/redisipc"
	"github.com/megane-go/megane/services"
)

func main() {
	var (
		url       = flag.String("redis", "redis://127.0.0.1:6379/0", "Redis URL")
		ns        = flag.String("ns", "test", "key namespace")
		role      = flag.String("role", "service", "service or cluster")
		name      = flag.String("name", "work", "service name")
		copyN     = flag.Int("copy", 0, "service copy number")
		id        = flag.Int("id", 0, "cluster id")
		ttl       = flag.Duration("ttl", 2*time.Second, "heartbeat TTL")
		claimIdle = flag.Duration("claim-idle", 0, "ClaimIdle (default: the TTL)")
		work      = flag.Duration("work", 0, "time each job takes")
		verbose   = flag.Bool("v", false, "log to stderr")
	)
	flag.Parse()
	log := slog.New(slog.DiscardHandler)
	if *verbose {
		log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	ctx, stop := testenv.SignalContext()
	defer stop()
	rdb, ks, err := testenv.Connect(ctx, *url, *ns)
	if err != nil {
		fatal(err)
	}
	defer rdb.Close()
	ipc := redisipc.Options{HeartbeatTTL: *ttl, ClaimIdle: *claimIdle, BlockTimeout: 200 * time.Millisecond,
		DirectoryRefresh: 200 * time.Millisecond}

	switch *role {
	case "service":
		w := &worker{work: *work}
		err = services.Run(ctx, services.Options{Name: *name, Copy: *copyN, Redis: rdb, Keys: ks, Logger: log,
			IPC: ipc, OnReady: func() { fmt.Println("READY") }}, w)
	case "cluster":
		err = runCluster(ctx, rdb, ks, ipc, *id, log)
	default:
		err = fmt.Errorf("unknown role %q", *role)
	}
	if err != nil {
		fatal(err)
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "ipcnode:", err)
	os.Exit(1)
}

// worker answers "job" with its payload after the configured work time,
// and counts what it handled so the tests can prove nothing ran twice.
type worker struct {
	work    time.Duration
	handled atomic.Int64
}

func (w *worker) Launch(ctx context.Context, s *services.Service) error { return nil }

func (w *worker) HandleCommand(ctx context.Context, s *services.Service, cmd services.Command) (any, error) {
	if cmd.Op != "job" {
		return nil, fmt.Errorf("%w: %s", redisipc.ErrUnknownOp, cmd.Op)
	}
	if w.work > 0 {
		time.Sleep(w.work)
	}
	w.handled.Add(1)
	return json.RawMessage(cmd.Payload), nil
}

func (w *worker) Stats(ctx context.Context) map[string]any {
	return map[string]any{"jobs": w.handled.Load()}
}

func runCluster(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace, o redisipc.Options, id int, log *slog.Logger) error {
	o.Redis, o.Keys, o.Addr, o.Logger = rdb, ks, redisipc.ClusterAddr(id), log
	n, err := redisipc.New(ctx, o)
	if err != nil {
		return err
	}
	n.EvalEnv().Set("shard_ids", []int{2 * id, 2*id + 1})
	n.EvalEnv().Provide("guilds", func() any { return 1000 + id })
	n.HandleCommand("owner", func(ctx context.Context, r *redisipc.Request) ([]byte, error) {
		return []byte(n.Addr()), nil
	})
	fmt.Println("READY")
	<-ctx.Done()
	cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return n.Close(cctx)
}
