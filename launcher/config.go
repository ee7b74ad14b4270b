package launcher

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/disgoorg/disgo/gateway"
	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/cluster"
	"github.com/megane-go/megane/identify"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/lifecycle"
	"github.com/megane-go/megane/monitor"
	"github.com/megane-go/megane/notify"
	"github.com/megane-go/megane/redisconn"
	"github.com/megane-go/megane/redisipc"
	"github.com/megane-go/megane/services"
	"github.com/megane-go/megane/stats"
)

// ErrInvalidConfig wraps every configuration error New and Run report. They
// are reported before any process, connection or Redis key is created.
var ErrInvalidConfig = errors.New("launcher: invalid config")

// Defaults of the Config fields that have a fixed default.
const (
	DefaultRESTURL           = identify.DefaultRESTURL
	DefaultHeartbeatInterval = cluster.DefaultHeartbeatInterval
	// DefaultLeaseTTL is Config.LeaseTTL's default.
	DefaultLeaseTTL             = 15 * time.Second
	DefaultReadyTimeout         = 60 * time.Second
	DefaultReadyTimeoutPerShard = 15 * time.Second
	DefaultRestartBackoff       = time.Second
	DefaultMaxRestartBackoff    = 30 * time.Second
	DefaultMaxRestarts          = 5
	DefaultRestartWindow        = 10 * time.Minute
	DefaultReshardGrowth        = 50
	DefaultShutdownTimeout      = 20 * time.Second
	DefaultServiceReadyTimeout  = 30 * time.Second
	DefaultDemoShards           = 4
	DefaultDemoGuilds           = 24
	DefaultDemoPingInterval     = 3 * time.Second
)

// MaxDemoGuilds is the largest fake world demo mode builds (about 200 MB).
const MaxDemoGuilds = 100_000

// identifyInterval is how long an identify occupies its bucket (Discord's
// 5 s plus the limiter's margin); ready timeouts add one per identify a
// cluster may have to queue behind.
const identifyInterval = 5500 * time.Millisecond

// Config configures a bot run by Run. The same Config is used in every
// process (the launcher re-executes the binary, so main builds it again in
// each child); the launcher passes what it decided (shard count, shard ranges,
// URLs) to the children through environment variables, which take precedence
// over the struct.
//
// Every field may be overridden by the environment variable named in its
// comment; an empty variable counts as unset. Counts and durations have the
// range given in their comment, and zero means the default: a value outside
// its range, from the struct or the environment, makes New fail with
// ErrInvalidConfig, which lists every problem at once.
type Config struct {
	// Worker runs in every cluster process. Required.
	Worker cluster.Worker

	// Services are the service workers, by name. A name becomes the IPC
	// address "service:<name>", so it must match [A-Za-z0-9_.-]{1,64}.
	Services map[string]ServiceSpec

	// Token is the bot token (with or without the "Bot " prefix).
	// Env DISCORD_TOKEN. Empty: demo mode against the built-in fake Discord,
	// unless DisableDemo is set.
	Token string

	// RedisURL is the Redis every process connects to (redis://,
	// rediss://, redis+cluster://, redis+sentinel://; see redisconn).
	// Env REDIS_URL. Empty and Redis nil: an embedded in-memory Redis is
	// started in the launcher and its URL handed to the children (demo only:
	// it dies with the launcher).
	RedisURL string

	// Redis is an already built client, used instead of RedisURL. Because
	// every child runs the same main, it is used in the children too; when
	// it is built from something a child cannot rebuild, set RedisURL as
	// well and leave Redis nil in children. Run does not close it.
	Redis redis.UniversalClient

	// Namespace separates this bot's keys from others in the same Redis
	// (keys start with "megane:<namespace>:"). Env MEGANE_NAMESPACE.
	// Default: the application id read from the token.
	Namespace string

	// Clusters is the number of cluster processes. Env MEGANE_CLUSTERS.
	// Default: runtime.NumCPU(), capped by the shard count. Shards are split
	// into contiguous ranges whose sizes differ by at most one. With
	// TotalClusters set, it is how many of the bot's clusters this launcher
	// runs at most (its capacity). Range 1..1024.
	Clusters int

	// Binary is the program the launcher starts its children from. Env
	// MEGANE_BINARY. Default: the path this program was started from, which
	// the launcher execs again at every spawn, so a build replaced at that
	// path is what restarted children run (a rolling restart deploys it).
	// A child that fails to start from it during a rolling restart is
	// started from the launcher's own running image instead.
	Binary string

	// TotalClusters, when set, makes this launcher one of several that run
	// the bot together (on one or many hosts, same Redis and namespace):
	// the bot has TotalClusters clusters, and each launcher claims up to
	// Clusters of them through leases in Redis, taking over those of a
	// launcher that died (its processes RESUME the saved sessions). Every
	// launcher of a bot must give the same value. Env
	// MEGANE_TOTAL_CLUSTERS. Default 0: this launcher runs the whole bot.
	// Range 1..1024.
	TotalClusters int

	// LeaseTTL is how long a cluster's lease lasts without renewal (with
	// TotalClusters). A launcher renews its leases every third of it; when
	// it dies, its clusters are taken over after at most LeaseTTL, and a
	// cluster process that cannot confirm its lease (its launcher frozen,
	// its host cut off from Redis) stops its shards before that. Env
	// MEGANE_LEASE_TTL. Default DefaultLeaseTTL. Range 1s..5m.
	LeaseTTL time.Duration

	// Shards is the total shard count. Env MEGANE_SHARDS. Default: the
	// shards Discord recommends in GET /gateway/bot, adjusted by
	// GuildsPerShard and LargeBotSharding. Range 1..65536.
	Shards int

	// GuildsPerShard scales Discord's recommendation (made for about 1000
	// guilds per shard) when Shards is not set: 500 doubles the shard count.
	// Env MEGANE_GUILDS_PER_SHARD. Default 0: Discord's recommendation as is.
	// Range 100..2500 (Discord refuses a shard with more than 2500).
	GuildsPerShard int

	// LargeBotSharding rounds a computed shard count up to a multiple of
	// max(16, max_concurrency), which Discord requires of bots with large bot
	// sharding. Env MEGANE_LARGE_BOT_SHARDING. Default false.
	LargeBotSharding bool

	// MaxConcurrency overrides session_start_limit.max_concurrency. It may
	// only lower Discord's value: a higher one would make Discord reject
	// identifies, so it is an error. Env MEGANE_MAX_CONCURRENCY.
	// Default: Discord's value. Range 1..1024.
	MaxConcurrency int

	// IdentifyReserve is the number of session starts kept back when
	// checking session_start_limit.remaining before a mass start: the
	// launcher refuses to start when fewer than identifies+IdentifyReserve
	// remain. Env MEGANE_IDENTIFY_RESERVE. Default 0. Range 0..100000.
	IdentifyReserve int

	// IdentifyWindow is the spacing between two IDENTIFYs of one bucket.
	// Only for fakes with a shorter window than Discord's 5 s.
	// Env MEGANE_IDENTIFY_WINDOW. Default identify.DefaultWindow.
	// Range 10ms..1m.
	IdentifyWindow time.Duration

	// RESTURL is Discord's REST base URL including the API version, for
	// example a rate-limit proxy such as nirn-proxy.
	// Env MEGANE_DISCORD_REST_URL. Default DefaultRESTURL.
	RESTURL string

	// GatewayURL overrides the gateway URL of GET /gateway/bot (ws:// or
	// wss://, without a query). Env MEGANE_DISCORD_GATEWAY_URL.
	GatewayURL string

	// Intents are the gateway intents of every shard. Zero: the cluster
	// package's default.
	Intents gateway.Intents

	// ClusterOptions, when set, adjusts the options of each cluster process
	// after the launcher has filled them in (bot options, raw events, the
	// identify limiter). A replaced OnReady still runs the launcher's.
	ClusterOptions func(*cluster.Options)

	// OnEvent receives lifecycle events in the launcher process: clusters
	// and services spawned, ready, exited, restarted, given up; all clusters
	// ready; and the shard events the clusters publish. Calls are serial and
	// in order; a slow OnEvent delays later events, not supervision. The
	// same events are appended to the Redis stream keyspace.Events.
	OnEvent func(lifecycle.Event)

	// OnStart, when set, is called once in the launcher process after the
	// children were spawned, with the launcher's handles into the bot's
	// shared state (IPC, Store, Cache, Fetch, Stats): Megane's master code
	// goes here. It runs in its own goroutine, so it may block; ctx ends
	// when the launcher begins to stop, and the handles are closed once
	// OnStart returned (or ShutdownTimeout after the stop began). The
	// clusters may not be ready yet: wait on Launcher.AllReady, or on ctx.
	OnStart func(ctx context.Context, h *Handles)

	// Logger receives the logs of every role. Default: text to stderr at the
	// level of env MEGANE_LOG_LEVEL (debug, info, warn, error, or an offset
	// such as warn+2; default info). An invalid level is a config error even
	// when Logger is set.
	Logger *slog.Logger

	// HeartbeatInterval is how often a cluster refreshes its heartbeat key
	// (TTL three intervals) and how often the launcher checks it. A cluster
	// whose key has expired on two checks in a row is killed and respawned.
	// Env MEGANE_HEARTBEAT_INTERVAL. Default DefaultHeartbeatInterval.
	// Range 100ms..1m.
	HeartbeatInterval time.Duration

	// ReadyTimeout and ReadyTimeoutPerShard bound how long a cluster may take
	// from spawn to ready: ReadyTimeout + ReadyTimeoutPerShard × its own
	// shard count + 5.5 s per identify it may have to queue behind (shards
	// of the same start that share its identify buckets). A cluster over
	// its deadline is killed and respawned.
	// Env MEGANE_READY_TIMEOUT, MEGANE_READY_TIMEOUT_PER_SHARD.
	// Defaults DefaultReadyTimeout, DefaultReadyTimeoutPerShard.
	// Ranges 1s..1h and 100ms..10m.
	ReadyTimeout         time.Duration
	ReadyTimeoutPerShard time.Duration

	// RestartBackoff is the first delay before respawning a crashed process;
	// it doubles with every crash up to MaxRestartBackoff and starts over
	// once the process became ready.
	// Env MEGANE_RESTART_BACKOFF, MEGANE_RESTART_BACKOFF_MAX.
	// Defaults DefaultRestartBackoff, DefaultMaxRestartBackoff.
	// Ranges 10ms..5m and 10ms..1h; a MaxRestartBackoff below
	// RestartBackoff is raised to it.
	RestartBackoff    time.Duration
	MaxRestartBackoff time.Duration

	// MaxRestarts is how many times a process is respawned after a crash
	// within RestartWindow; the next crash gives up on it (event
	// ClusterGaveUp, an error log) until RestartCluster revives it.
	// Env MEGANE_MAX_RESTARTS, MEGANE_RESTART_WINDOW.
	// Defaults DefaultMaxRestarts, DefaultRestartWindow.
	// Ranges 1..1000 and 1s..24h.
	MaxRestarts   int
	RestartWindow time.Duration

	// ReshardCheckInterval turns automatic re-sharding on: this often the
	// launcher asks Discord for the recommended shard count (rounded as
	// configured) and re-shards (Reshard) when it exceeds the current count
	// by ReshardGrowth percent or more. With several launchers only the one
	// with the smallest id checks. Env MEGANE_RESHARD_CHECK_INTERVAL.
	// Default 0: off. Range 1s..24h.
	ReshardCheckInterval time.Duration
	// ReshardGrowth is the growth of the recommendation, in percent of the
	// current shard count, that triggers an automatic re-shard. Env
	// MEGANE_RESHARD_GROWTH. Default DefaultReshardGrowth (50: 1,000
	// shards re-shard when Discord recommends 1,500). Range 1..1000.
	ReshardGrowth int

	// ShutdownTimeout is how long a child may take to save its sessions and
	// exit after SIGTERM before it is killed.
	// Env MEGANE_SHUTDOWN_TIMEOUT. Default DefaultShutdownTimeout.
	// Range 1s..10m.
	ShutdownTimeout time.Duration

	// StatusWebhook is a Discord webhook URL that receives the events an
	// operator should hear about (all clusters ready, cluster exited,
	// restarted, gave up, unresponsive; service exited), coalesced into a
	// message every 2 s. Env MEGANE_STATUS_WEBHOOK. Default: none.
	StatusWebhook string

	// StatsInterval is how often every process (launcher, clusters,
	// services) publishes its statistics hash (keyspace.Stats).
	// Env MEGANE_STATS_INTERVAL. Default stats.DefaultInterval.
	// Range 1s..1h.
	StatsInterval time.Duration

	// HTTPAddr is where the launcher serves its metrics (/metrics), health
	// checks (/healthz, /readyz) and live status page (/), host:port
	// (package monitor). "off" serves nothing. When the address is taken
	// the launcher logs a warning and runs the bot without them.
	// Env MEGANE_HTTP_ADDR. Default monitor.DefaultAddr (127.0.0.1:9190,
	// loopback only). Port range 0..65535 (0 picks a free port).
	HTTPAddr string

	// DisableDemo makes a missing token an error instead of starting demo
	// mode; set it in production. Env MEGANE_DEMO=false.
	DisableDemo bool

	// Eval bounds the expressions every process evaluates for
	// Node.Eval and megane-cli eval: Timeout, MaxMemory, MaxNodes and
	// MaxConcurrent (see redisipc.EvalLimits; zero fields keep its
	// defaults of 5 s, 64 MiB, 2000 nodes and 2 at once). Ranges: Timeout
	// 10ms..5m, MaxMemory 1MiB..4GiB, MaxNodes 10..100000, MaxConcurrent
	// 1..64. Eval.Disabled turns eval off in every process.
	// Env MEGANE_EVAL_TIMEOUT, MEGANE_EVAL_MAX_MEMORY (bytes, or with a
	// KiB/MiB/GiB suffix), MEGANE_EVAL_MAX_NODES, MEGANE_EVAL_MAX_CONCURRENT,
	// MEGANE_EVAL=false.
	Eval redisipc.EvalLimits

	// EvalLauncher enables eval on the launcher's own node. It is off by
	// default: the launcher supervises everything else, so nothing a caller
	// sends should be able to cost it time or memory.
	// Env MEGANE_EVAL_LAUNCHER. Default false.
	EvalLauncher bool

	// DisableEvalClusters and DisableEvalServices turn eval off in the
	// cluster and in the service processes.
	// Env MEGANE_EVAL_CLUSTERS=false, MEGANE_EVAL_SERVICES=false.
	DisableEvalClusters bool
	DisableEvalServices bool

	// DemoGuilds and DemoPingInterval shape demo mode: the size of the fake
	// world, and how often the fake sends a "!ping" message into it (a
	// negative interval sends none).
	// Env MEGANE_DEMO_GUILDS, MEGANE_DEMO_PING_INTERVAL.
	// Defaults DefaultDemoGuilds, DefaultDemoPingInterval; demo mode runs
	// DefaultDemoShards shards unless Shards is set. Ranges
	// 1..MaxDemoGuilds and 100ms..1h. The fake world takes about 2 KB of
	// memory per guild; building it stops when the launcher is signalled.
	DemoGuilds       int
	DemoPingInterval time.Duration

	// logLevel is MEGANE_LOG_LEVEL, the level of the default Logger.
	logLevel slog.Level
}

// ServiceSpec registers a service worker.
type ServiceSpec struct {
	// Worker handles the service's commands. Required.
	Worker services.Worker
	// Copies is the number of processes running the service; they share its
	// inbox. Default 1. Range 1..256.
	Copies int
	// ReadyTimeout bounds spawn to ready. Default DefaultServiceReadyTimeout.
	// Range 1s..1h.
	ReadyTimeout time.Duration
}

var serviceNameRE = regexp.MustCompile(`^[A-Za-z0-9_.\-]{1,64}$`)

// setDefaults fills in every default that does not depend on Discord.
func (c *Config) setDefaults() {
	c.Token = strings.TrimPrefix(c.Token, "Bot ")
	c.RESTURL = strings.TrimRight(c.RESTURL, "/")
	if c.RESTURL == "" {
		c.RESTURL = DefaultRESTURL
	}
	setDur(&c.HeartbeatInterval, DefaultHeartbeatInterval)
	setDur(&c.LeaseTTL, DefaultLeaseTTL)
	setDur(&c.ReadyTimeout, DefaultReadyTimeout)
	setDur(&c.ReadyTimeoutPerShard, DefaultReadyTimeoutPerShard)
	setDur(&c.RestartBackoff, DefaultRestartBackoff)
	setDur(&c.MaxRestartBackoff, DefaultMaxRestartBackoff)
	setDur(&c.RestartWindow, DefaultRestartWindow)
	if c.ReshardGrowth == 0 {
		c.ReshardGrowth = DefaultReshardGrowth
	}
	setDur(&c.ShutdownTimeout, DefaultShutdownTimeout)
	setDur(&c.StatsInterval, stats.DefaultInterval)
	setDur(&c.DemoPingInterval, DefaultDemoPingInterval)
	if c.HTTPAddr == "" {
		c.HTTPAddr = monitor.DefaultAddr
	}
	if c.MaxRestarts == 0 {
		c.MaxRestarts = DefaultMaxRestarts
	}
	if c.DemoGuilds == 0 {
		c.DemoGuilds = DefaultDemoGuilds
	}
	if c.MaxRestartBackoff > 0 && c.MaxRestartBackoff < c.RestartBackoff {
		c.MaxRestartBackoff = c.RestartBackoff
	}
	if c.Logger == nil {
		c.Logger = defaultLogger(c.logLevel)
	}
}

func setDur(d *time.Duration, def time.Duration) {
	if *d == 0 {
		*d = def
	}
}

func defaultLogger(level slog.Level) *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// validate reports every problem of c at once, after the earlier ones
// (variables that did not parse).
func (c *Config) validate(earlier ...error) error {
	errs := earlier
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf(format, args...)) }

	if c.Worker == nil {
		bad("Worker is nil: set Config.Worker to your cluster.Worker")
	}
	if c.Token != "" {
		if _, err := appIDFromToken(c.Token); err != nil {
			bad("%s: %w", envToken, err)
		}
	} else if c.DisableDemo {
		bad("%s is not set and demo mode is disabled", envToken)
	}
	if c.Namespace != "" {
		if _, err := keyspace.New(c.Namespace); err != nil {
			bad("%s: %w", envNamespace, err)
		}
	}
	if c.RedisURL != "" {
		rc, err := redisconn.New(c.RedisURL)
		if err != nil {
			bad("%s: %w", envRedisURL, err)
		} else {
			_ = rc.Close()
		}
	}
	for _, f := range c.intFields() {
		if err := f.check(); err != nil {
			errs = append(errs, err)
		}
	}
	if c.Binary != "" {
		if fi, err := os.Stat(c.Binary); err != nil {
			bad("%s: %w", envBinary, err)
		} else if fi.IsDir() || fi.Mode()&0o111 == 0 {
			bad("%s=%q is not an executable file", envBinary, c.Binary)
		}
	}
	if c.StatusWebhook != "" {
		if err := notify.ValidateURL(c.StatusWebhook); err != nil {
			bad("%s: %w", envStatusWebhook, err)
		}
	}
	if c.TotalClusters > 0 && c.Shards > 0 && c.TotalClusters > c.Shards {
		bad("%s=%d is more than %s=%d: a cluster needs at least one shard", envTotalClusters, c.TotalClusters, envShards, c.Shards)
	}
	if c.TotalClusters > 0 && c.Clusters > c.TotalClusters {
		bad("%s=%d is more than %s=%d: a launcher cannot run more clusters than the bot has", envClusters, c.Clusters, envTotalClusters, c.TotalClusters)
	}
	if c.Shards > 0 && c.Clusters > c.Shards {
		bad("%s=%d is more than %s=%d: a cluster needs at least one shard", envClusters, c.Clusters, envShards, c.Shards)
	}
	for _, f := range c.durationFields() {
		if err := f.check(); err != nil {
			errs = append(errs, err)
		}
	}
	if u, err := url.Parse(c.RESTURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		bad("%s=%q must be an http(s) URL such as %s", envRESTURL, c.RESTURL, DefaultRESTURL)
	}
	if c.GatewayURL != "" {
		u, err := url.Parse(c.GatewayURL)
		switch {
		case err != nil || (u.Scheme != "ws" && u.Scheme != "wss") || u.Host == "":
			bad("%s=%q must be a ws:// or wss:// URL", envGatewayURL, c.GatewayURL)
		case strings.Contains(c.GatewayURL, "?"):
			// disgo appends "?v=10&encoding=json…" to the URL as it is.
			bad("%s=%q must not contain a query", envGatewayURL, c.GatewayURL)
		}
	}
	for name, s := range c.Services {
		if !serviceNameRE.MatchString(name) {
			bad("service name %q must be 1-64 characters of [A-Za-z0-9_.-]", name)
		}
		if s.Worker == nil {
			bad("service %q has no Worker", name)
		}
		if err := (intField{fmt.Sprintf("service %q: Copies", name), "", s.Copies, 1, maxServiceCopies, false}).check(); err != nil {
			errs = append(errs, err)
		}
		if err := (durationField{fmt.Sprintf("service %q: ReadyTimeout", name), "", s.ReadyTimeout, minServiceReadyTime, maxServiceReadyTime}).check(); err != nil {
			errs = append(errs, err)
		}
	}
	c.validateEval(bad)
	c.validateHTTPAddr(bad)
	if len(errs) > 0 {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, errors.Join(errs...))
	}
	return nil
}

// appIDFromToken reads the application id from a bot token's first segment,
// as disgo does; a token that fails here would fail in every cluster.
func appIDFromToken(token string) (uint64, error) {
	first, _, _ := strings.Cut(token, ".")
	raw, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(first, "="))
	if err != nil {
		return 0, fmt.Errorf("not a bot token: its first segment is not base64")
	}
	id, err := strconv.ParseUint(string(raw), 10, 64)
	if err != nil {
		return 0, fmt.Errorf("not a bot token: its first segment is not an application id")
	}
	return id, nil
}
