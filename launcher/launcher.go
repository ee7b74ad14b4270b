package launcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/clusterhash"
	"github.com/megane-go/megane/identify"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/lifecycle"
	"github.com/megane-go/megane/notify"
	"github.com/megane-go/megane/redisconn"
	"github.com/megane-go/megane/redisipc"
	"github.com/megane-go/megane/sessions"
	"github.com/megane-go/megane/shardmap"
	"github.com/megane-go/megane/stats"
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
	// ErrBusy is returned by RollingRestart while another one is running.
	ErrBusy = errors.New("launcher: a rolling restart is already running")
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
	clusters       []*proc
	services       []*proc
	sink           *sink
	startedAt      time.Time
	gateway        identify.GatewayInfo // as saved by planShards, for rewriting it
	health         *redisHealth
	node           *redisipc.Node
	handles        *Handles

	ran        atomic.Bool
	mu         sync.Mutex
	running    bool
	stop       context.CancelFunc
	allReady   bool
	allReadyAt time.Time
	readyCh    chan struct{}
	rolling    sync.Mutex
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
		if l.exe, err = os.Executable(); err != nil {
			return nil, fmt.Errorf("launcher: find own executable to spawn children: %w", err)
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

// AllReady is closed the first time every cluster is ready.
func (l *Launcher) AllReady() <-chan struct{} { return l.readyCh }

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
	wg.Go(func() { l.watchHeartbeats(ctx) })
	wg.Go(func() { l.forwardShardEvents(ctx, from) })
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
	waitOnStart()
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
	ran, err := l.rdb.Exists(ctx, l.ks.Launcher()).Result()
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
	if err := l.writeShardMap(ctx); err != nil {
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
	if err := l.rdb.HSet(ctx, l.ks.Launcher(), l.launcherFields("running")...).Err(); err != nil {
		return fmt.Errorf("launcher: write %s: %w", l.ks.Launcher(), err)
	}
	rep, stopStats := l.startStats(ctx)
	*cleanups = append(*cleanups, stopStats)
	if err := l.buildHandles(l.node, rep); err != nil {
		return err
	}
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
	if n, err := l.rdb.Exists(ctx, l.ks.Launcher()).Result(); err != nil || n > 0 {
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

// planShards settles shard count, max_concurrency and cluster count from the
// config and GET /gateway/bot, and saves the gateway info for the clusters.
func (l *Launcher) planShards(ctx context.Context) error {
	cfg := &l.cfg
	gb, err := fetchGatewayBot(ctx, http.DefaultClient, cfg.RESTURL, cfg.Token)
	if err != nil {
		return err
	}
	discordMC := gb.SessionStartLimit.MaxConcurrency
	l.maxConcurrency = discordMC
	if cfg.MaxConcurrency > 0 {
		if cfg.MaxConcurrency > discordMC {
			return fmt.Errorf("%w: %s=%d is more than Discord's max_concurrency %d; Discord would reject the extra identifies",
				ErrInvalidConfig, envMaxConcurrency, cfg.MaxConcurrency, discordMC)
		}
		l.maxConcurrency = cfg.MaxConcurrency
	}
	l.shardCount = cfg.Shards
	if l.shardCount == 0 {
		l.shardCount = shardCount(gb.Shards, cfg.GuildsPerShard, cfg.LargeBotSharding, discordMC)
		if l.shardCount > maxShards {
			return fmt.Errorf("%w: Discord recommends %d shards, %d with %s=%d, more than the %d a launcher runs",
				ErrInvalidConfig, gb.Shards, l.shardCount, envGuildsPerShard, cfg.GuildsPerShard, maxShards)
		}
	}
	clusters := cfg.Clusters
	if clusters == 0 {
		clusters = min(defaultClusters(), l.shardCount)
	}
	if clusters > l.shardCount {
		return fmt.Errorf("%w: %d clusters for %d shards: a cluster needs at least one shard", ErrInvalidConfig, clusters, l.shardCount)
	}
	cfg.Clusters = clusters

	info := identify.GatewayInfo{
		URL:                    gb.URL,
		Shards:                 l.shardCount,
		MaxConcurrency:         l.maxConcurrency,
		MaxConcurrencyOverride: l.maxConcurrency != discordMC,
		Total:                  gb.SessionStartLimit.Total,
		Remaining:              gb.SessionStartLimit.Remaining,
		ResetAt:                time.Now().Add(time.Duration(gb.SessionStartLimit.ResetAfter) * time.Millisecond),
	}
	if err := identify.SaveGatewayInfo(ctx, l.rdb, l.ks, info); err != nil {
		return fmt.Errorf("launcher: save gateway info: %w", err)
	}
	l.gateway = info
	l.log.Info("gateway",
		slog.Int("shards", l.shardCount), slog.Int("recommended_shards", gb.Shards),
		slog.Int("clusters", clusters),
		slog.Int("max_concurrency", l.maxConcurrency), slog.Int("discord_max_concurrency", discordMC),
		slog.Int("session_starts_remaining", gb.SessionStartLimit.Remaining),
		slog.Int("session_starts_total", gb.SessionStartLimit.Total),
		slog.String("namespace", cfg.Namespace))
	return nil
}

// writeShardMap records which cluster owns which shard, replacing any older
// map in one transaction so routers never see a mix.
//
// A session belongs to one shard of one shard count: after a change of the
// shard count no saved session may be resumed, so all are dropped and every
// shard identifies.
func (l *Launcher) writeShardMap(ctx context.Context) error {
	stored, err := shardmap.Load(ctx, l.rdb, l.ks)
	if err != nil {
		return fmt.Errorf("launcher: read shard map: %w", err)
	}
	old := stored.ShardCount
	if old > 0 && old != l.shardCount {
		l.log.Warn("shard count changed: dropping every saved session, all shards identify",
			slog.Int("old_shard_count", old), slog.Int("shard_count", l.shardCount))
		for s := range max(old, l.shardCount) {
			if err := sessions.Delete(ctx, l.rdb, l.ks, s); err != nil {
				return fmt.Errorf("launcher: drop sessions of the old shard count: %w", err)
			}
		}
	}
	plan := l.plannedShardMap()
	clusters, oldClusters := plan.Clusters, stored.Clusters
	if err := shardmap.Save(ctx, l.rdb, l.ks, plan); err != nil {
		return fmt.Errorf("launcher: write shard map: %w", err)
	}
	// Clusters and shards the new plan no longer has would keep their
	// records forever: no process owns them any more.
	if oldClusters > clusters || old > l.shardCount {
		pipe := l.rdb.Pipeline()
		for c := clusters; c < oldClusters; c++ {
			clusterhash.Delete(ctx, pipe, l.ks, c)
		}
		for s := l.shardCount; s < old; s++ {
			pipe.Del(ctx, l.ks.ShardStatus(s))
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("launcher: drop records of clusters and shards no longer planned: %w", err)
		}
	}
	return nil
}

// plannedShardMap is the whole shard map of the plan: every shard's
// cluster, the shard count and the cluster count.
func (l *Launcher) plannedShardMap() shardmap.Map {
	ranges := splitShards(l.shardCount, l.cfg.Clusters)
	m := shardmap.Map{ShardCount: l.shardCount, Clusters: len(ranges), Owners: map[int]int{}}
	for c, shards := range ranges {
		for _, s := range shards {
			m.Owners[s] = c
		}
	}
	return m
}

// checkBudget counts the shards of a (re)start that will IDENTIFY (those
// without a saved session) and refuses when session_start_limit cannot pay
// for them. It returns that count.
func (l *Launcher) checkBudget(ctx context.Context, shards []int) (int, error) {
	states, err := sessions.Load(ctx, l.rdb, l.ks, shards)
	if err != nil {
		return 0, fmt.Errorf("launcher: load sessions: %w", err)
	}
	identifies := len(shards) - len(states) // Load returns only resumable sessions
	if identifies == 0 {
		return 0, nil
	}
	if err := identify.CheckBudget(ctx, l.rdb, l.ks, identifies, l.cfg.IdentifyReserve); err != nil {
		return identifies, fmt.Errorf("launcher: %d shards must identify: %w", identifies, err)
	}
	return identifies, nil
}

func allShards(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

func (l *Launcher) buildProcs(identifies int) {
	for id, shards := range splitShards(l.shardCount, l.cfg.Clusters) {
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

// clusterReady is called by a cluster that became ready; the first time all
// are ready, AllClustersReady fires.
func (l *Launcher) clusterReady() {
	for _, p := range l.clusters {
		if p.currentState() != StateReady {
			return
		}
	}
	l.mu.Lock()
	first := !l.allReady
	if first {
		l.allReady, l.allReadyAt = true, time.Now()
	}
	at := l.allReadyAt
	l.mu.Unlock()
	if !first {
		return
	}
	close(l.readyCh)
	l.log.Info("all clusters ready",
		slog.Int("clusters", len(l.clusters)), slog.Int("shards", l.shardCount),
		slog.Duration("elapsed", time.Since(l.startedAt).Round(time.Millisecond)))
	l.sink.event(lifecycle.Event{Type: lifecycle.AllClustersReady, Cluster: -1, Shard: -1,
		Detail: fmt.Sprintf("%d clusters, %d shards", len(l.clusters), l.shardCount)})
	l.sink.do(func(ctx context.Context) error {
		return l.rdb.HSet(ctx, l.ks.Launcher(), "all_ready_at", at.UnixMilli()).Err()
	})
}

func (l *Launcher) setLauncherStatus(status string) {
	if l.sink == nil {
		return
	}
	fields := l.launcherFields(status)
	l.sink.do(func(ctx context.Context) error {
		return l.rdb.HSet(ctx, l.ks.Launcher(), fields...).Err()
	})
}

// launcherFields is the launcher's hash (keyspace.Launcher) with status.
func (l *Launcher) launcherFields(status string) []any {
	host, _ := os.Hostname()
	fields := []any{"status", status, "pid", os.Getpid(), "host", host,
		"started_at", l.startedAt.UnixMilli(), "clusters", len(l.clusters),
		"shard_count", l.shardCount, "max_concurrency", l.maxConcurrency}
	l.mu.Lock()
	if !l.allReadyAt.IsZero() {
		fields = append(fields, "all_ready_at", l.allReadyAt.UnixMilli())
	}
	l.mu.Unlock()
	return fields
}

func (l *Launcher) cluster(id int) (*proc, error) {
	if l.role != RoleLauncher {
		return nil, ErrNotLauncher
	}
	l.mu.Lock()
	running := l.running
	l.mu.Unlock()
	if !running {
		return nil, ErrNotRunning
	}
	if id < 0 || id >= len(l.clusters) {
		return nil, fmt.Errorf("%w: %d (have 0..%d)", ErrUnknownCluster, id, len(l.clusters)-1)
	}
	return l.clusters[id], nil
}

// RestartCluster restarts cluster id: SIGTERM (its shards save their
// sessions), wait for the exit, respawn at once, and wait until the new
// process is ready, its shards having resumed. Other clusters are not
// touched. It also revives a cluster the launcher gave up on. Before
// stopping anything it checks that session_start_limit can pay for the
// shards that have no saved session.
func (l *Launcher) RestartCluster(ctx context.Context, id int) error {
	p, err := l.cluster(id)
	if err != nil {
		return err
	}
	return p.restart(ctx)
}

// RollingRestart restarts every cluster in turn with RestartCluster, each
// once the previous one is ready again, so at most one cluster is down at a
// time. It stops at the first failure.
func (l *Launcher) RollingRestart(ctx context.Context) error {
	if _, err := l.cluster(0); err != nil {
		return err
	}
	if !l.rolling.TryLock() {
		return ErrBusy
	}
	defer l.rolling.Unlock()
	for _, p := range l.clusters {
		if err := p.restart(ctx); err != nil {
			return fmt.Errorf("launcher: rolling restart stopped at cluster %d: %w", p.id, err)
		}
	}
	return nil
}

// startStats publishes the launcher's statistics (keyspace.Stats("launcher"))
// with the fleet's state, and returns the function that stops it.
func (l *Launcher) startStats(ctx context.Context) (*stats.Reporter, func()) {
	r := stats.NewReporter(l.rdb, l.ks, "launcher", stats.Options{Interval: l.cfg.StatsInterval, Logger: l.log})
	_ = r.Add("clusters", func(context.Context) any { return len(l.clusters) })
	_ = r.Add("clusters_ready", func(context.Context) any {
		ready := 0
		for _, p := range l.clusters {
			if p.status().State == StateReady {
				ready++
			}
		}
		return ready
	})
	_ = r.Add("cluster_restarts", func(context.Context) any {
		n := 0
		for _, p := range l.clusters {
			n += p.status().Restarts
		}
		return n
	})
	_ = r.Add("services", func(context.Context) any { return len(l.services) })
	_ = r.Add("shards", func(context.Context) any {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.shardCount
	})
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(sctx)
	}()
	return r, func() { cancel(); <-done }
}
