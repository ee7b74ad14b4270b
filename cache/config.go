package cache

import (
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
)

// Entity names a kind of projected object. The names are also the fields of
// the keyspace CacheSchema hash and the kinds of a cross-cluster fetch.
type Entity string

// The projected entity kinds.
const (
	// EntityGuild is a guild: HASH guild:<id>. Always projected, because the
	// shard -> guild relation and every purge hang off it.
	EntityGuild Entity = "guild"
	// EntityChannel is a guild channel or thread: HASH channel:<id>, and the
	// relation SET guild:<id>:channels.
	EntityChannel Entity = "channel"
	// EntityRole is a role: HASH role:<id>, and the relation SET guild:<id>:roles.
	EntityRole Entity = "role"
	// EntityMember is a guild membership: HASH member:<guild>:<user>, and the
	// relation SET guild:<id>:members.
	EntityMember Entity = "member"
	// EntityUser is a user: HASH user:<id>, SET user:<id>:guilds, SET users.
	EntityUser Entity = "user"
	// EntityEmoji is a guild's emoji list: HASH guild:<id>:emojis (id -> name).
	EntityEmoji Entity = "emoji"
)

// AllEntities lists every entity kind, the default of Config.Entities.
var AllEntities = []Entity{EntityGuild, EntityChannel, EntityRole, EntityMember, EntityUser, EntityEmoji}

// DefaultFields are the hash fields kept per entity when Config.Fields does
// not name the entity. Field names are Discord's JSON keys. They were chosen
// to be what bots read (names, ownership, permissions, hierarchy) and short
// enough that a typical guild hash stays in Redis's listpack encoding.
//
// Besides these, the projector always writes its own fields: "shard" and
// "unavailable" on guilds, "guild_id" on channels and roles.
var DefaultFields = map[Entity][]string{
	EntityGuild: {
		"name", "icon", "owner_id", "member_count", "large", "features",
		"preferred_locale", "premium_tier", "premium_subscription_count",
		"verification_level", "nsfw_level", "joined_at", "system_channel_id",
	},
	EntityChannel: {
		"type", "name", "position", "parent_id", "nsfw", "rate_limit_per_user",
		"owner_id", "archived", "locked",
	},
	EntityRole: {
		"name", "color", "position", "permissions", "hoist", "managed", "mentionable",
	},
	EntityMember: {
		"nick", "roles", "joined_at", "premium_since", "avatar",
		"communication_disabled_until", "pending",
	},
	EntityUser: {
		"username", "global_name", "discriminator", "avatar", "bot",
	},
}

// Config configures a Projector.
type Config struct {
	// Redis is the client the projection is written to. Required.
	Redis redis.UniversalClient

	// Keys is the keyspace of the bot. Required.
	Keys keyspace.Keyspace

	// Entities lists the entity kinds to project. Default: AllEntities.
	// EntityGuild is always projected. Members and users share the
	// membership relation: it is kept when either is projected.
	Entities []Entity

	// Fields lists, per entity, the JSON keys of the Discord object that are
	// stored as hash fields. An entity missing from the map keeps
	// DefaultFields. Scalar values are stored as strings (true/false as
	// "1"/"0", null as an absent field); objects and arrays are skipped,
	// except: guild "features" (compact, see FeatureNames), member "roles"
	// (comma-separated ids), channel "permission_overwrites"
	// ("id:type:allow:deny" joined by ","), and the keys of a thread's
	// "thread_metadata" (e.g. "archived"), which are read as channel keys.
	Fields map[Entity][]string

	// MaxValueBytes truncates kept string values (names, topics,
	// descriptions) to this many bytes, at a UTF-8 boundary. Ids and id
	// lists are never truncated. Redis keeps a hash in the compact listpack
	// encoding only while every value is at most 64 bytes (a guild costs
	// about a third of the memory that way). Default 64; negative keeps
	// values whole.
	MaxValueBytes int

	// QueueSize bounds the number of queued events. Enqueue drops an
	// ordinary event when the queue is full; READY, GUILD_CREATE and
	// GUILD_DELETE are queued anyway (up to MaxQueueBytes), because each
	// carries a guild's whole state and puts the projection right again.
	// Default 16384.
	QueueSize int

	// MaxQueueBytes bounds the payload bytes held by the queue, the events
	// that bypass QueueSize included. Default 256 MiB.
	MaxQueueBytes int

	// BatchSize is the most events written in one pipelined batch.
	// Default 512.
	BatchSize int

	// FlushInterval is how long the writer waits for a batch to fill before
	// writing a partial one. Under load batches fill by themselves while the
	// previous one is written; the wait only trades latency for fewer round
	// trips when events trickle in. Default 1ms; negative means no wait.
	FlushInterval time.Duration

	// RetryBackoff is the first wait after a failed batch; it doubles up to
	// 5 s. A failed batch is retried whole (every write is idempotent), so a
	// Redis outage delays the projection instead of corrupting it.
	// Default 50ms.
	RetryBackoff time.Duration

	// Logger receives warnings (drops, bad payloads, Redis errors).
	// Default: discard.
	Logger *slog.Logger
}

// ErrInvalidConfig is returned (wrapped) by NewProjector for an unusable
// Config, and by NewFetcher for an unusable FetcherConfig.
var ErrInvalidConfig = errors.New("cache: invalid config")

// plan is the resolved Config.
type plan struct {
	entities map[Entity]bool
	fields   map[Entity]*fieldSet
}

func (c *Config) resolve() (plan, error) {
	if c.Redis == nil {
		return plan{}, fmt.Errorf("%w: Redis is nil", ErrInvalidConfig)
	}
	if c.Keys.Namespace() == "" {
		return plan{}, fmt.Errorf("%w: Keys is the zero Keyspace", ErrInvalidConfig)
	}
	if c.MaxValueBytes == 0 {
		c.MaxValueBytes = 64
	}
	if c.MaxValueBytes > 0 && c.MaxValueBytes < 24 {
		return plan{}, fmt.Errorf("%w: MaxValueBytes %d is shorter than a snowflake", ErrInvalidConfig, c.MaxValueBytes)
	}
	if c.QueueSize <= 0 {
		c.QueueSize = 16384
	}
	if c.MaxQueueBytes <= 0 {
		c.MaxQueueBytes = 256 << 20
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 512
	}
	if c.FlushInterval == 0 {
		c.FlushInterval = time.Millisecond
	}
	if c.RetryBackoff <= 0 {
		c.RetryBackoff = 50 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	ents := c.Entities
	if ents == nil {
		ents = AllEntities
	}
	p := plan{entities: map[Entity]bool{EntityGuild: true}, fields: map[Entity]*fieldSet{}}
	for _, e := range ents {
		if !slices.Contains(AllEntities, e) {
			return plan{}, fmt.Errorf("%w: unknown entity %q", ErrInvalidConfig, e)
		}
		p.entities[e] = true
	}
	for e := range c.Fields {
		if !slices.Contains(AllEntities, e) {
			return plan{}, fmt.Errorf("%w: Fields names unknown entity %q", ErrInvalidConfig, e)
		}
	}
	for _, e := range AllEntities {
		names, ok := c.Fields[e]
		if !ok {
			names = DefaultFields[e]
		}
		p.fields[e] = newFieldSet(names, c.MaxValueBytes)
	}
	return p, nil
}

// fieldSet is the kept fields of one entity.
type fieldSet struct {
	names  []string
	keep   map[string]bool
	intern map[string]fieldName // the field names, shared by every write
	all    bool                 // keep every scalar (owner replies)
	maxLen int
}

func newFieldSet(names []string, maxLen int) *fieldSet {
	fs := &fieldSet{names: names, keep: make(map[string]bool, len(names)),
		intern: make(map[string]fieldName, len(names)), maxLen: maxLen}
	for _, n := range names {
		fs.keep[n] = true
		fs.intern[n] = fieldName{s: n, a: n}
	}
	return fs
}

// fieldName is a kept field's name, also boxed once: go-redis takes its
// arguments as []any, and boxing every name of every write costs an
// allocation each.
type fieldName struct {
	s string
	a any
}

// name returns the stored name of key, if key is kept.
func (fs *fieldSet) name(key []byte) (fieldName, bool) {
	if fs.all {
		k := string(key)
		return fieldName{s: k, a: k}, true
	}
	n, ok := fs.intern[string(key)]
	return n, ok
}

// allFields keeps every scalar field, untruncated: what an owner sends back.
var allFields = &fieldSet{all: true, maxLen: -1}

func (fs *fieldSet) kept(key []byte) bool { return fs.all || fs.keep[string(key)] }
