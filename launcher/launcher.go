package launcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/identify"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/redisipc"
)

// Errors of the launcher's control API.
var (
	// ErrNotLauncher is returned by the control methods in a cluster or
	// service process: only the launcher supervises.
	ErrNotLauncher = errors.New("launcher: this process is not the launcher")
	// ErrNotRunning is returned by the control methods before Run has
	// started the clusters or after it stopped.
	ErrNotRunning = errors.New("launcher: not running")
	// ErrUnknownCluster is returned for a cluster id the launcher does not run.
	ErrUnknownCluster = errors.New("launcher: unknown cluster")
	// ErrBusy is returned by RollingRestart and Reshard while a rolling
	// restart or a re-shard is running.
	ErrBusy = errors.New("launcher: a rolling restart or re-shard is already running")
	// ErrRestartFailed is returned when a restarted cluster exits or is
	// killed before it became ready.
	ErrRestartFailed = errors.New("launcher: restarted cluster did not become ready")
)

// Launcher is one process of a bot: the supervising launcher, a cluster or a
// service, as MEGANE_ROLE says. Its control methods (RestartCluster,
// RollingRestart, Status, Shutdown) work in the launcher process while Run
// runs; the same controls are served over IPC as the node "launcher".
type Launcher struct {
	cfg  Config
	role Role
	log  *slog.Logger
	exe  string

	// Set once by start, read-only afterwards.
	rdb            redis.UniversalClient
	ks             keyspace.Keyspace
	redisURL       string
	shardCount     int
	maxConcurrency int
	totalClusters  int // the plan's clusters (all launchers')
	clusters       []*proc
	services       []*proc
	sink           *sink
	startedAt      time.Time
	gateway        identify.GatewayInfo // as saved by settlePlan, for rewriting it
	health         *redisHealth
	node           *redisipc.Node
	handles        *Handles
	coop           *coop  // nil when one launcher runs the bot
	images         images // builds kept for rolling back a deploy
	monitorURL     string // the status page's URL; "" when not served

	ran        atomic.Bool
	mu         sync.Mutex
	running    bool
	stop       context.CancelFunc
	allReady   bool
	allReadyAt time.Time
	readyCh    chan struct{}
	rolling    sync.Mutex
	held       *heldClusters // clusters stopped for a re-shard's switch
}

// Run builds a Launcher from cfg and runs it in the role the environment
// gives this process; it is the whole main of a bot:
//
//	func main() {
//		if err := launcher.Run(context.Background(), launcher.Config{Worker: myBot{}}); err != nil {
//			log.Fatal(err)
//		}
//	}
//
// In the launcher it returns nil after a graceful stop (SIGINT, SIGTERM,
// ctx cancelled, Shutdown, the IPC op "shutdown"), and an error when the bot
// could not start.
//
// In a cluster or service process that must stop because Redis failed (a
// start-up write refused, Redis unreachable), Run does not return: it exits
// the process with status ExitRedisUnavailable, which tells the launcher to
// respawn it once Redis works without counting a crash.
func Run(ctx context.Context, cfg Config) error {
	l, err := New(cfg)
	if err != nil {
		return err
	}
	return l.Run(ctx)
}

// New applies the environment to cfg, fills in defaults and validates it,
// without starting anything.
func New(cfg Config) (*Launcher, error) {
	return newFromEnv(cfg, os.LookupEnv)
}

func newFromEnv(cfg Config, lookup func(string) (string, bool)) (*Launcher, error) {
	r := &envReader{lookup: lookup}
	cfg.applyEnv(r)
	roleVar, _ := r.get(envRole)
	role, err := parseRole(roleVar)
	if err != nil {
		r.errs = append(r.errs, err)
	}
	cfg.setDefaults()
	if err := cfg.validate(r.errs...); err != nil {
		return nil, err
	}
	l := &Launcher{cfg: cfg, role: role, log: cfg.Logger, readyCh: make(chan struct{})}
	if role == RoleLauncher {
		if l.exe = cfg.Binary; l.exe == "" {
			if l.exe, err = os.Executable(); err != nil {
				return nil, fmt.Errorf("launcher: find own executable to spawn children: %w", err)
			}
		}
	}
	return l, nil
}

// Role returns the role of this process.
func (l *Launcher) Role() Role { return l.role }

// Run runs this process's role until ctx ends or a signal stops it. A
// Launcher runs once; build another with New to run again.
func (l *Launcher) Run(ctx context.Context) error {
	if !l.ran.CompareAndSwap(false, true) {
		return errors.New("launcher: Run called twice on one Launcher")
	}
	switch l.role {
	case RoleCluster:
		return l.childExit(l.runCluster(ctx))
	case RoleService:
		return l.childExit(l.runService(ctx))
	}
	return l.runLauncher(ctx)
}

// Shutdown stops the launcher gracefully, as SIGTERM does: children get
// SIGTERM, save their sessions and exit; Run then returns.
func (l *Launcher) Shutdown() error {
	if l.role != RoleLauncher {
		return ErrNotLauncher
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.running {
		return ErrNotRunning
	}
	l.stop()
	return nil
}

func (l *Launcher) runLauncher(ctx context.Context) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	finished := make(chan struct{})
	defer close(finished)
	force := make(chan struct{})
	go l.handleSignals(ctx, cancel, force, finished)

	var cleanups []func()
	defer func() {
		for _, f := range slices.Backward(cleanups) {
			f()
		}
	}()
	if err := l.start(ctx, &cleanups); err != nil {
		return err
	}

	from := l.lastEventID(ctx)
	var wg sync.WaitGroup
	l.mu.Lock()
	l.running, l.stop = true, cancel
	l.mu.Unlock()
	for _, p := range l.all() {
		wg.Go(func() { p.run(ctx) })
	}
	waitOnStart := l.runOnStart(ctx)
	l.health.start(&wg)
	if l.coop != nil {
		wg.Go(func() { l.coop.run(ctx) })
	}
	wg.Go(func() { l.watchHeartbeats(ctx) })
	wg.Go(func() { l.forwardShardEvents(ctx, from) })
	if l.cfg.ReshardCheckInterval > 0 {
		wg.Go(func() { l.autoReshard(ctx, l.cfg.ReshardCheckInterval) })
	}
	go func() {
		select {
		case <-force:
			l.log.Warn("second signal: killing every child now")
			for _, p := range l.all() {
				p.forceKill()
			}
		case <-finished:
		}
	}()

	<-ctx.Done()
	l.log.Info("stopping: asking every child to save its sessions and exit", slog.Duration("timeout", l.cfg.ShutdownTimeout))
	l.mu.Lock()
	l.running = false
	l.mu.Unlock()
	// The probe rewrites the launcher's hash as running: stop it first.
	l.health.shutdown()
	wg.Wait()
	if l.coop != nil {
		// Every child has exited and saved its sessions: the others may
		// take the clusters over now, and resume them.
		l.coop.releaseAll()
	}
	waitOnStart()
	l.images.remove()
	l.setLauncherStatus("stopped")
	l.log.Info("stopped")
	return nil
}

// handleSignals turns the first SIGINT/SIGTERM into a graceful stop and a
// second one into killing every child at once.
func (l *Launcher) handleSignals(ctx context.Context, cancel context.CancelFunc, force chan<- struct{}, finished <-chan struct{}) {
	sig := make(chan os.Signal, 2)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	defer signal.Stop(sig)
	select {
	case s := <-sig:
		l.log.Info("signal received: stopping gracefully (send it again to kill the children at once)", slog.String("signal", s.String()))
		cancel()
	case <-ctx.Done():
	case <-finished:
		return
	}
	select {
	case <-sig:
		close(force)
	case <-finished:
	}
}
