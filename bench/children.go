package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/disgoorg/disgo"
	"github.com/disgoorg/disgo/bot"
	disgocache "github.com/disgoorg/disgo/cache"
	"github.com/disgoorg/disgo/gateway"
	"github.com/disgoorg/disgo/rest"
	"github.com/disgoorg/disgo/sharding"

	"github.com/megane-go/megane/cluster"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/launcher"
	"github.com/megane-go/megane/redisconn"
	"github.com/megane-go/megane/services"
)

// The bench's child processes are this binary again. A launcher's
// children carry MEGANE_ROLE (cluster or service); the bench's own carry
// BENCH_ROLE:
const (
	roleIPCService = "ipc-service" // the echo service and the bare baseline's server
	roleDecode     = "decode"      // disgo decoding only: the events row's baseline
	roleLauncher   = "launcher"    // a launcher process of its own (memory row)
)

// Environment of the children.
const (
	envRole       = "BENCH_ROLE"
	envRedis      = "BENCH_REDIS"
	envNS         = "BENCH_NS"
	envNoCache    = "BENCH_NOCACHE"    // clusters run without the projection
	envCPUProfile = "BENCH_CPUPROFILE" // SIGUSR1 starts a CPU profile into this file, SIGUSR2 ends it
	envGateway    = "BENCH_GATEWAY"
	envREST       = "BENCH_REST"
	envToken      = "BENCH_TOKEN"
	envShards     = "BENCH_SHARDS"
)

// benchIntents are the intents of every bench bot: the GUILD_* updates of
// the events row need GUILD_MEMBERS.
const benchIntents = gateway.IntentGuilds | gateway.IntentGuildMessages | gateway.IntentGuildMembers

// idleBot is the bench's bot: it does nothing with events, so what is
// measured is Megane's own cost.
type idleBot struct{}

func (idleBot) Launch(context.Context, *cluster.Cluster) error { return nil }

// echo is the service under test: it answers with the request payload.
type echo struct{}

func (echo) Launch(context.Context, *services.Service) error { return nil }

func (echo) HandleCommand(_ context.Context, _ *services.Service, cmd services.Command) (any, error) {
	return rawJSON(cmd.Payload), nil
}

type rawJSON []byte

func (r rawJSON) MarshalJSON() ([]byte, error) { return r, nil }

// launcherConfig is the configuration of every launcher of the bench, in
// the bench process and in its children (which must agree on Services).
func launcherConfig() launcher.Config {
	return launcher.Config{
		Worker:   idleBot{},
		Services: map[string]launcher.ServiceSpec{"echo": {Worker: echo{}, Copies: 1}},
		Intents:  benchIntents,
		ClusterOptions: func(o *cluster.Options) {
			if os.Getenv(envNoCache) != "" {
				o.DisableCache = true
			}
		},
	}
}

func runChild(role string) error {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if path := os.Getenv(envCPUProfile); path != "" {
		profileOnSignal(path)
	}
	switch role {
	case "", roleLauncher:
		return launcher.Run(ctx, launcherConfig())
	case roleIPCService:
		return runIPCService(ctx)
	case roleDecode:
		return runDecode(ctx)
	}
	return fmt.Errorf("unknown %s %q", envRole, role)
}

// profileOnSignal starts a CPU profile into path on SIGUSR1 and writes it
// on SIGUSR2.
func profileOnSignal(path string) {
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, syscall.SIGUSR1, syscall.SIGUSR2)
	go func() {
		var f *os.File
		for s := range sig {
			switch {
			case s == syscall.SIGUSR1 && f == nil:
				var err error
				if f, err = os.Create(path); err == nil {
					if err := pprof.StartCPUProfile(f); err != nil {
						_ = f.Close()
						f = nil
					}
				}
			case s == syscall.SIGUSR2 && f != nil:
				pprof.StopCPUProfile()
				_ = f.Close()
				f = nil
			}
		}
	}()
}

// runIPCService is the ipc row's service copy: the echo service, and the
// bare baseline's server beside it.
func runIPCService(ctx context.Context) error {
	rdb, err := redisconn.Open(ctx, os.Getenv(envRedis))
	if err != nil {
		return err
	}
	defer rdb.Close()
	ks, err := keyspace.New(os.Getenv(envNS))
	if err != nil {
		return err
	}
	go func() {
		if err := bareServe(ctx, rdb, ks); err != nil {
			fmt.Fprintln(os.Stderr, "bench: bare baseline:", err)
		}
	}()
	return services.Run(ctx, services.Options{Name: "echo", Redis: rdb, Keys: ks,
		OnReady: func() { fmt.Println("READY") }}, echo{})
}

// runDecode is disgo on its own: the same shards, intents and gateway as a
// cluster, disgo's own event handlers, no listeners, no cache, no raw
// events, no Redis. It prints READY once the shard manager opened; the
// bench waits for the shards at the fake.
func runDecode(ctx context.Context) error {
	shards, err := strconv.Atoi(os.Getenv(envShards))
	if err != nil {
		return fmt.Errorf("%s: %w", envShards, err)
	}
	ids := make([]int, shards)
	for i := range ids {
		ids[i] = i
	}
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	client, err := disgo.New(os.Getenv(envToken),
		bot.WithLogger(quiet),
		bot.WithCacheConfigOpts(disgocache.WithCaches(disgocache.FlagsNone)),
		bot.WithRestClientConfigOpts(rest.WithURL(os.Getenv(envREST))),
		bot.WithShardManagerConfigOpts(
			sharding.WithLogger(quiet),
			sharding.WithShardCount(shards),
			sharding.WithShardIDs(ids...),
			sharding.WithIdentifyRateLimiterConfigOpt(gateway.WithIdentifyMaxConcurrency(16)),
			sharding.WithGatewayConfigOpts(gateway.WithURL(os.Getenv(envGateway)), gateway.WithIntents(benchIntents),
				gateway.WithLogger(quiet)),
		),
	)
	if err != nil {
		return fmt.Errorf("disgo: %w", err)
	}
	if err := client.OpenShardManager(ctx); err != nil {
		return fmt.Errorf("disgo: %w", err)
	}
	defer client.Close(context.Background())
	fmt.Println("READY")
	<-ctx.Done()
	return nil
}

// startChild runs this binary with role and extra environment, and waits
// until it prints READY.
func startChild(ctx context.Context, role string, env ...string) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(append(os.Environ(), envRole+"="+role), env...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ready := make(chan struct{})
	go func() {
		buf := make([]byte, 256)
		var seen strings.Builder
		signalled := false
		for {
			n, err := out.Read(buf)
			seen.Write(buf[:n])
			if !signalled && strings.Contains(seen.String(), "READY") {
				close(ready)
				signalled = true
				seen.Reset()
			}
			if err != nil {
				return
			}
		}
	}()
	select {
	case <-ready:
		return cmd, nil
	case <-time.After(2 * time.Minute):
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		return nil, fmt.Errorf("%s child not ready after 2 minutes", role)
	}
}

// stopChild ends a child started by startChild.
func stopChild(cmd *exec.Cmd) {
	_ = cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}
