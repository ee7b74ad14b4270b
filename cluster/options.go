package cluster

import (
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"time"

	"github.com/disgoorg/disgo/bot"
	"github.com/disgoorg/disgo/gateway"
	"github.com/disgoorg/disgo/sharding"
	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/cache"
	"github.com/megane-go/megane/identify"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/redisipc"
	"github.com/megane-go/megane/stats"
)

// Limiter modes of Options.Limiter.
const (
	// LimiterRedis coordinates IDENTIFYs of every process through Redis
	// (identify.Limiter). The default.
	LimiterRedis = "redis"
	// LimiterLocal uses disgo's per-process limiter, which cannot see other
	// processes. It exists to demonstrate what LimiterRedis prevents; a bot
	// split over several processes must not use it.
	LimiterLocal = "local"
)

// Defaults of Options.
const (
	// DefaultIntents are the intents used when Options.Intents is zero: guild
	// structure and guild and direct messages. None is privileged, so the
	// default never gets the 4014 close of a bot without approval; add
	// gateway.IntentMessageContent (privileged) to read message text.
	DefaultIntents = gateway.IntentGuilds | gateway.IntentGuildMessages | gateway.IntentDirectMessages
	// DefaultHeartbeatInterval is how often the cluster refreshes its
	// heartbeat key.
	DefaultHeartbeatInterval = 2 * time.Second
	// DefaultSessionSyncInterval is how often handled sequences are written.
	DefaultSessionSyncInterval = time.Second
	// DefaultStopTimeout bounds the resumable stop.
	DefaultStopTimeout = 10 * time.Second
	// DefaultStallTimeout is how long one event may stay in its handlers
	// before the cluster stops heartbeating, so the launcher replaces it.
	DefaultStallTimeout = 30 * time.Second
	// DefaultOwnerCacheTTL is how long a cluster keeps what REST returned
	// for an owner lookup.
	DefaultOwnerCacheTTL = time.Minute
	// DefaultOwnerCacheSize is how many such entities it keeps at most.
	DefaultOwnerCacheSize = 1000
)

// ErrInvalidOptions is returned (wrapped, listing every problem) by Run for
// unusable Options.
var ErrInvalidOptions = errors.New("cluster: invalid options")

// ErrShardFailed is returned (wrapped) by Run when a shard gave up for good:
// Discord closed it with a code that forbids reconnecting (4004
// authentication failed, 4010-4014 sharding, intents). Restarting the
// process does not help until the configuration changes.
var ErrShardFailed = errors.New("cluster: shard failed")

// Options configures Run.
type Options struct {
	// ID is the cluster id, 0 or more. It names the cluster's keys and
	// addresses.
	ID int
	// ShardIDs are the shards this cluster runs. Empty means all shards
	// 0..ShardCount-1.
	ShardIDs []int
	// ShardCount is the bot's total shard count. Zero takes it from
	// keyspace.Gateway() (saved by the launcher) or else from Discord's
	// GET /gateway/bot.
	ShardCount int
	// MaxConcurrency is the number of identify buckets. Zero takes it like
	// ShardCount; a value that is still unknown means 1.
	MaxConcurrency int

	// Token is the bot token.
	Token string
	// RESTURL is the REST base including the version, e.g.
	// "http://127.0.0.1:8080/api/v10". Empty means Discord.
	RESTURL string
	// GatewayURL is the gateway URL to dial, without a query string. Empty
	// takes it from keyspace.Gateway() or else from GET /gateway/bot.
	GatewayURL string
	// Intents to identify with. Zero means DefaultIntents.
	Intents gateway.Intents

	// Redis is the shared Redis. Required.
	Redis redis.UniversalClient
	// Keys is the bot's keyspace. Required.
	Keys keyspace.Keyspace
	// Logger receives the cluster's and disgo's logs. Default slog.Default().
	Logger *slog.Logger

	// Limiter is LimiterRedis (default, also for "") or LimiterLocal.
	Limiter string
	// IdentifyWindow is the spacing between two IDENTIFYs of one bucket.
	// Default identify.DefaultWindow (Discord's 5 s); tests against a fake
	// with a shorter window set both to match.
	IdentifyWindow time.Duration
	// IdentifyReserve is how many session starts Run leaves untouched: it
	// refuses to start (identify.ErrSessionStartLimit) when its IDENTIFYs
	// would eat into them. Default 0.
	IdentifyReserve int
	// Fence is the fencing token of the lease under which this process
	// runs its shards (package leases), zero without leases. Run raises
	// the shards' session fences to it before opening them and saves
	// sessions with it; once a newer owner raised a fence, the writes fail
	// with sessions.ErrFenced and Run stops the shards and returns it,
	// leaving the records of the new owner alone.
	Fence uint64

	// HeartbeatInterval is how often keyspace.ClusterHeartbeat(ID) is
	// refreshed; its TTL is three intervals. Default
	// DefaultHeartbeatInterval.
	HeartbeatInterval time.Duration
	// SessionSyncInterval is how often the sequences of handled events are
	// written to Redis. A crash replays at most about this much of the
	// shards' traffic. Default DefaultSessionSyncInterval.
	SessionSyncInterval time.Duration
	// StopTimeout bounds the resumable stop after ctx ends: waiting for
	// shards still resuming, for handlers in flight, and the final writes.
	// Default DefaultStopTimeout.
	StopTimeout time.Duration
	// StallTimeout is how long one gateway event may stay in its handlers
	// before the cluster stops refreshing its heartbeat (a listener that
	// never returns blocks every shard of the process, since disgo runs
	// listeners one at a time). Default DefaultStallTimeout.
	StallTimeout time.Duration

	// BotOptions are extra disgo client options, applied after the
	// cluster's own (so they may override the logger, REST and cache
	// settings). The shard manager is built by the cluster: use
	// ShardingOptions and GatewayOptions for it, because
	// bot.WithShardManagerConfigOpts has no effect here.
	// bot.WithAsyncEventsEnabled breaks the delivery guarantee (a sequence
	// may be saved before its listener ran).
	BotOptions []bot.ConfigOpt
	// ShardingOptions are extra options for disgo's shard manager, applied
	// after the cluster's own.
	ShardingOptions []sharding.ConfigOpt
	// GatewayOptions are extra options for every shard's gateway, applied
	// after the cluster's own (for example gateway.WithCompression or
	// gateway.WithPresenceOpts). Do not turn raw events off: the cluster
	// tracks sequences with them.
	GatewayOptions []gateway.ConfigOpt

	// OnReady is called once, on its own goroutine, when every shard of the
	// cluster has been READY or RESUMED.
	OnReady func()
	// OnRawEvent is called for every dispatch (including READY, RESUMED and
	// event types disgo does not know) with the raw "d" JSON, before disgo's
	// typed listeners. It runs on the shard's gateway goroutine, outside
	// disgo's listener lock, so calls for different shards may run at the
	// same time; calls for one shard come in sequence order. It must not
	// block (the shard reads nothing meanwhile): hand the work to a queue.
	// data is a private copy the callee may keep.
	OnRawEvent func(shardID int, eventType string, data []byte)

	// Cache configures the Redis projection of the cluster's guilds,
	// channels, roles, members and users (package cache): which entities
	// and fields are kept, queue and batch sizes. Nil uses cache.Config's
	// defaults. Redis, Keys and Logger are filled in from these Options
	// when zero. Every cluster of a bot should keep the same entities and
	// fields: the projection records one schema, which readers and
	// Cluster.Fetch consult.
	Cache *cache.Config
	// DisableCache turns the projection off: no Projector runs and the
	// cluster writes no cache keys. Cluster.Cache and Cluster.Fetch still
	// read whatever other clusters project, and the cluster still answers
	// cross-cluster fetches (cache.FetchOp) for its guilds. Default false.
	DisableCache bool
	// OwnerCacheTTL is how long the cluster keeps what a REST call returned
	// while answering a cross-cluster fetch (cache.FetchOp) or its own
	// Fetch's fallback: an entity the projection does not hold, or a field
	// it does not keep. Within it, fetching the same entity again costs no
	// REST call (cache.SourceOwnerCache instead of cache.SourceOwnerREST).
	// The trade-off is staleness: gateway updates do not reach this cache,
	// so such an answer can be up to OwnerCacheTTL old, where every fetch
	// would otherwise spend a rate-limited request. Default
	// DefaultOwnerCacheTTL (1 min); negative turns the cache off.
	OwnerCacheTTL time.Duration
	// OwnerCacheSize bounds the entities kept for OwnerCacheTTL; when full,
	// expired ones are dropped first, then arbitrary ones. Default
	// DefaultOwnerCacheSize (1000).
	OwnerCacheSize int
	// IPC tunes the cluster's node. Redis, Keys and Addr
	// ("cluster:<ID>") are set by Run, Hold is always on (Run starts
	// serving once Launch returned) and Logger defaults to the cluster's
	// logger; the other fields keep redisipc's defaults when zero.
	IPC redisipc.Options
	// Stats tunes the cluster's statistics reporter ("cluster:<ID>").
	// Interval defaults to stats.DefaultInterval, Logger to the cluster's
	// logger.
	Stats stats.Options

	// Standby runs the shards without serving the bot: the Worker's Launch
	// is not called, no listener (disgo's, OnRawEvent) sees an event and no
	// projection runs (DisableCache is implied). The shards connect,
	// identify through the limiter of IdentifyKeys and track their
	// sessions, and readiness (OnReady, Cluster.Ready) waits until every
	// guild READY announced has arrived (at most StandbyGuildWait). A
	// re-shard runs the new generation this way, with Keys a staging
	// keyspace (keyspace.Keyspace.Reshard), until the switch. Default false.
	Standby bool
	// IdentifyKeys is the keyspace whose identify buckets, session start
	// budget and gateway record the cluster uses. Default Keys; a standby
	// cluster spends the live bot's budget while its own records go to a
	// staging keyspace.
	IdentifyKeys keyspace.Keyspace
}

// StandbyGuildWait bounds how long a standby cluster waits, after every
// shard's READY, for the guilds READY announced (Discord may keep some
// unavailable for long).
const StandbyGuildWait = 30 * time.Second

func (o Options) withDefaults() Options {
	if o.Intents == 0 {
		o.Intents = DefaultIntents
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Limiter == "" {
		o.Limiter = LimiterRedis
	}
	if o.IdentifyWindow == 0 {
		o.IdentifyWindow = identify.DefaultWindow
	}
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = DefaultHeartbeatInterval
	}
	if o.SessionSyncInterval == 0 {
		o.SessionSyncInterval = DefaultSessionSyncInterval
	}
	if o.StopTimeout == 0 {
		o.StopTimeout = DefaultStopTimeout
	}
	if o.StallTimeout == 0 {
		o.StallTimeout = DefaultStallTimeout
	}
	if o.OwnerCacheTTL == 0 {
		o.OwnerCacheTTL = DefaultOwnerCacheTTL
	}
	if o.OwnerCacheSize == 0 {
		o.OwnerCacheSize = DefaultOwnerCacheSize
	}
	if o.IdentifyKeys.Namespace() == "" {
		o.IdentifyKeys = o.Keys
	}
	if o.Standby {
		o.DisableCache = true
		o.OnRawEvent = nil
	}
	o.ShardIDs = append([]int(nil), o.ShardIDs...)
	return o
}

// validate checks what can be checked before the shard count is known.
func (o Options) validate() error {
	var problems []string
	bad := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(format, args...)) }
	if o.ID < 0 {
		bad("ID %d is negative", o.ID)
	}
	if o.Token == "" {
		bad("Token is empty")
	}
	if o.Redis == nil {
		bad("Redis is nil")
	}
	if o.Keys.Namespace() == "" {
		bad("Keys is the zero Keyspace: build it with keyspace.New")
	}
	if o.ShardCount < 0 {
		bad("ShardCount %d is negative", o.ShardCount)
	}
	if o.OwnerCacheSize < 0 {
		bad("OwnerCacheSize %d is negative", o.OwnerCacheSize)
	}
	if o.MaxConcurrency < 0 {
		bad("MaxConcurrency %d is negative", o.MaxConcurrency)
	}
	if o.Limiter != LimiterRedis && o.Limiter != LimiterLocal {
		bad("Limiter %q is neither %q nor %q", o.Limiter, LimiterRedis, LimiterLocal)
	}
	if strings.Contains(o.GatewayURL, "?") {
		bad("GatewayURL %q has a query string; disgo appends its own", o.GatewayURL)
	}
	if o.RESTURL != "" && !strings.HasPrefix(o.RESTURL, "http://") && !strings.HasPrefix(o.RESTURL, "https://") {
		bad("RESTURL %q is not an http(s) URL", o.RESTURL)
	}
	for name, d := range map[string]time.Duration{
		"IdentifyWindow": o.IdentifyWindow, "HeartbeatInterval": o.HeartbeatInterval,
		"SessionSyncInterval": o.SessionSyncInterval, "StopTimeout": o.StopTimeout, "StallTimeout": o.StallTimeout,
	} {
		if d < 0 {
			bad("%s %s is negative", name, d)
		}
	}
	seen := map[int]bool{}
	for _, id := range o.ShardIDs {
		if id < 0 {
			bad("shard id %d is negative", id)
		}
		if seen[id] {
			bad("shard id %d is listed twice", id)
		}
		seen[id] = true
	}
	return joinProblems(problems)
}

// validateShards checks the shard ids against the (now known) shard count.
func validateShards(ids []int, count int) error {
	var problems []string
	if count <= 0 {
		problems = append(problems, fmt.Sprintf("shard count %d is not positive", count))
	}
	for _, id := range ids {
		if count > 0 && id >= count {
			problems = append(problems, fmt.Sprintf("shard id %d is not below the shard count %d", id, count))
		}
	}
	return joinProblems(problems)
}

func joinProblems(problems []string) error {
	if len(problems) == 0 {
		return nil
	}
	sort.Strings(problems)
	return fmt.Errorf("%w: %s", ErrInvalidOptions, strings.Join(problems, "; "))
}
