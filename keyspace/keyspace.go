// Package keyspace builds every Redis key and channel name Megane uses.
//
// Nothing else in the project concatenates key strings: a key that is not
// built here does not exist. Every key starts with "megane:<namespace>:", so
// several bots (or a test and a bot) can share one Redis. The trailing comment
// of each method names the Redis type of the key.
//
// The fields, owner and lifetime of every key are described once, in the
// "Redis key schema" table of the repository's README.md; a test checks that
// table's key patterns and types against this package, so the comments here
// say what a key is for and leave the fields to the table.
//
// Redis Cluster: keys that one Lua script or MULTI touches together carry the
// same hash tag (the part in braces); per-entity cache keys carry none, so they
// spread across slots.
package keyspace

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Prefix is the first segment of every key.
const Prefix = "megane"

// ErrBadNamespace is returned by New for a namespace that cannot be used in keys.
var ErrBadNamespace = errors.New("keyspace: namespace must be 1-64 characters of [A-Za-z0-9_.-]")

var namespaceRE = regexp.MustCompile(`^[A-Za-z0-9_.\-]{1,64}$`)

// MaxNameLen bounds a name that becomes part of a key (CheckName).
const MaxNameLen = 128

// ErrBadName is returned by CheckName for a string that must not become part
// of a key.
var ErrBadName = errors.New("keyspace: name must be 1-128 characters of [A-Za-z0-9_.:-]")

// CheckName reports whether s may become part of a key: 1 to MaxNameLen
// characters of [A-Za-z0-9_.:-]. Every name a builder below takes from a
// caller or a remote process (an address, an instance, a store bucket, a
// process name) must pass it first. The character set keeps out braces (a
// name could otherwise choose its own Redis Cluster hash tag, or close the
// one its key carries), glob characters (SCAN patterns), whitespace and
// control bytes; the length keeps a remote peer from making huge keys.
func CheckName(s string) error {
	if len(s) == 0 || len(s) > MaxNameLen {
		return fmt.Errorf("%w: %d bytes", ErrBadName, len(s))
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		case c == '_', c == '.', c == ':', c == '-':
		default:
			return fmt.Errorf("%w: %q", ErrBadName, s)
		}
	}
	return nil
}

// Keyspace builds the keys of one namespace. The zero value is not usable; use New.
type Keyspace struct {
	ns   string
	base string // "megane:<ns>:"
}

// New returns the keyspace of namespace ns.
func New(ns string) (Keyspace, error) {
	if !namespaceRE.MatchString(ns) {
		return Keyspace{}, fmt.Errorf("%w: %q", ErrBadNamespace, ns)
	}
	return Keyspace{ns: ns, base: Prefix + ":" + ns + ":"}, nil
}

// MustNew is New that panics on a bad namespace; for tests and constants.
func MustNew(ns string) Keyspace {
	k, err := New(ns)
	if err != nil {
		panic(err)
	}
	return k
}

// Namespace returns the namespace the keys are built in.
func (k Keyspace) Namespace() string { return k.ns }

// Base returns "megane:<ns>:", the prefix of every key of the namespace
// (for SCAN MATCH patterns in tools and tests).
func (k Keyspace) Base() string { return k.base }

// reshardSuffix ends the namespace of a re-shard's staging keyspace.
const reshardSuffix = ".reshard"

// Reshard returns the staging keyspace a re-shard's new generation of
// clusters keeps its own records in (sessions, statuses, cluster hashes,
// IPC) until the switch: namespace "<ns>.reshard", the namespace cut to
// leave room for the suffix. The launcher moves the sessions into this
// keyspace at the switch and deletes the rest; what it cannot name (IPC
// registrations, statistics) expires on its TTL.
func (k Keyspace) Reshard() Keyspace {
	ns := k.ns
	if len(ns) > 64-len(reshardSuffix) {
		ns = ns[:64-len(reshardSuffix)]
	}
	return MustNew(ns + reshardSuffix)
}

func id(n int) string { return strconv.Itoa(n) }

func u64(n uint64) string { return strconv.FormatUint(n, 10) }

// ---------------------------------------------------------------------------
// Gateway, sharding and sessions (launcher, cluster)
// ---------------------------------------------------------------------------

// Gateway holds what the bot knows of Discord's gateway: the recommended
// shard count, the effective max_concurrency and the session_start_limit
// that every IDENTIFY spends from. HASH
func (k Keyspace) Gateway() string { return k.base + gatewayName }

// ShardMap maps shard id -> cluster id; package shardmap writes and parses
// it. Routing a guild to its cluster reads it. HASH
func (k Keyspace) ShardMap() string { return k.base + "shardmap" }

// ShardSession is shard id's resumable session; its sequence only moves
// forward (Lua). HASH
func (k Keyspace) ShardSession(shard int) string { return k.base + "session:" + id(shard) }

// ShardStatus is shard id's live status, as the cluster running it sees
// it. HASH
func (k Keyspace) ShardStatus(shard int) string { return k.base + "shard:" + id(shard) }

// IdentifyBucket is the lock of identify bucket b (shard_id % max_concurrency).
// Held (SET NX PX) from dial to READY, then kept 5 s plus a margin so the next
// IDENTIFY in the bucket waits. STRING
func (k Keyspace) IdentifyBucket(bucket int) string { return k.base + "identify:" + id(bucket) }

// Cluster is cluster id's state: the process's own view, written by the
// cluster, and the supervisor's, written by the launcher; package
// clusterhash writes and parses it. HASH
func (k Keyspace) Cluster(cluster int) string { return k.base + "cluster:" + id(cluster) }

// ClusterHeartbeat is refreshed by cluster id with a TTL; the launcher kills
// and respawns a cluster whose heartbeat expired. STRING
func (k Keyspace) ClusterHeartbeat(cluster int) string {
	return k.base + "cluster:" + id(cluster) + ":heartbeat"
}

// Events is the capped stream of lifecycle events (cluster spawned, ready,
// exited, restarted, all clusters ready, shard ready/resumed/disconnected). STREAM
func (k Keyspace) Events() string { return k.base + "events" }

// Stats is the latest statistics snapshot of process name ("launcher",
// "cluster:3", "service:x:0"; see CheckName). It expires when no longer
// refreshed. HASH
func (k Keyspace) Stats(name string) string { return k.base + "stats:" + name }

// StatsIndex indexes the Stats hashes: member = process name, score = the
// unix ms of its last report. ZSET
func (k Keyspace) StatsIndex() string { return k.base + "stats-index" }

// Launcher is the launcher's state. HASH
func (k Keyspace) Launcher() string { return k.base + launcherName }

// Lease is the lease of name (a cluster, "cluster:3", or a service copy,
// "service:stats#0") among cooperating launchers: owner, host, pid, the
// fencing token and the expiry in Redis server time; package leases writes
// and parses it. It never expires itself: the token must only grow. HASH
func (k Keyspace) Lease(name string) string { return k.base + "lease:" + name }

// LauncherRecord is launcher id's record among cooperating launchers (host,
// pid, capacity, clusters owned); it expires when the launcher stops
// renewing it. HASH
func (k Keyspace) LauncherRecord(launcherID string) string {
	return k.base + "launchers:" + launcherID
}

// Launchers indexes the LauncherRecord hashes: member = launcher id, score
// = unix ms its record expires. ZSET
func (k Keyspace) Launchers() string { return k.base + "launchers" }

// PlanLock is held (SET NX PX) by the launcher writing the bot's plan (the
// shard map), so two launchers starting at once do not write two plans.
// STRING
func (k Keyspace) PlanLock() string { return k.base + "plan-lock" }

// Names of the keys that show a namespace a launcher ran in.
const (
	launcherName = "launcher"
	gatewayName  = "gateway"
)

// NamespaceMarkerPatterns returns SCAN MATCH patterns for the keys that
// show, in any namespace, that a launcher ran there (or began to): the
// Launcher and Gateway hashes. Tools list a Redis's bots with them.
func NamespaceMarkerPatterns() []string {
	return []string{Prefix + ":*:" + launcherName, Prefix + ":*:" + gatewayName}
}

// NamespaceOfMarker returns the namespace of a key a
// NamespaceMarkerPatterns pattern matched, and false for a key that only
// looks like one (a pattern's * also matches colons, so
// "megane:a:b:launcher" matches but belongs to no namespace).
func NamespaceOfMarker(key string) (string, bool) {
	rest, ok := strings.CutPrefix(key, Prefix+":")
	if !ok {
		return "", false
	}
	for _, name := range []string{launcherName, gatewayName} {
		if ns, ok := strings.CutSuffix(rest, ":"+name); ok {
			return ns, !strings.Contains(ns, ":")
		}
	}
	return "", false
}

// ---------------------------------------------------------------------------
// IPC (redisipc)
// ---------------------------------------------------------------------------

// Nodes indexes live nodes: member = instance id, score = expiry (unix ms). ZSET
func (k Keyspace) Nodes() string { return k.base + "nodes" }

// Node is the registration of one process instance (see CheckName).
// Expires unless heartbeated. HASH
func (k Keyspace) Node(instance string) string { return k.base + "node:" + instance }

// Inbox is the request stream of address addr ("cluster:3", "service:x",
// "launcher", "cli:<id>"; see CheckName). Service copies read it through the
// consumer group InboxGroup. Its nodes create it, keep a TTL on it while
// they live and (a CLI's) delete it on Close; senders never create it
// (XADD NOMKSTREAM). STREAM
func (k Keyspace) Inbox(addr string) string { return k.base + "{inbox:" + addr + "}" }

// InboxGroup is the consumer group name used on service inboxes.
func (k Keyspace) InboxGroup() string { return "workers" }

// Replies is the reply stream of one process instance (see CheckName). The
// instance creates it, keeps a TTL on it while it lives and deletes it on
// Close; a reply never creates it (XADD NOMKSTREAM), so a late reply to a
// caller that left is dropped. STREAM
func (k Keyspace) Replies(instance string) string { return k.base + "{replies:" + instance + "}" }

// DeadLetter keeps messages that could not be handled, with the reason and
// a bounded prefix of the message; capped (XADD MAXLEN ~). STREAM
func (k Keyspace) DeadLetter() string { return k.base + "deadletter" }

// DeadLetterSeen marks a bad broadcast (by digest, hex) as dead-lettered,
// so of all the nodes that received it only the first records it. Short
// TTL. STRING
func (k Keyspace) DeadLetterSeen(digest string) string {
	return k.base + "deadletter-seen:" + digest
}

// Broadcast is the pub/sub channel for eval and control broadcasts. PubSub channel
func (k Keyspace) Broadcast() string { return k.base + "broadcast" }

// StoreBucket is one bucket of the central store (see CheckName): field =
// key, value = JSON. HASH
func (k Keyspace) StoreBucket(bucket string) string { return k.base + "store:" + bucket }

// StoreBuckets lists the store's bucket names. SET
func (k Keyspace) StoreBuckets() string { return k.base + "store-buckets" }

// ---------------------------------------------------------------------------
// Cache projections (cache)
// ---------------------------------------------------------------------------

// Guild is the projection of guild id. HASH
func (k Keyspace) Guild(guild uint64) string { return k.base + "guild:" + u64(guild) }

// GuildChannels is the set of channel (and thread) ids of guild id. SET
func (k Keyspace) GuildChannels(guild uint64) string {
	return k.base + "guild:" + u64(guild) + ":channels"
}

// GuildRoles is the set of role ids of guild id. SET
func (k Keyspace) GuildRoles(guild uint64) string { return k.base + "guild:" + u64(guild) + ":roles" }

// GuildMembers is the set of member user ids of guild id. SET
func (k Keyspace) GuildMembers(guild uint64) string {
	return k.base + "guild:" + u64(guild) + ":members"
}

// GuildEmojis maps emoji id -> name for guild id. HASH
func (k Keyspace) GuildEmojis(guild uint64) string {
	return k.base + "guild:" + u64(guild) + ":emojis"
}

// Channel is the projection of channel or thread id. HASH
func (k Keyspace) Channel(channel uint64) string { return k.base + "channel:" + u64(channel) }

// Role is the projection of role id. HASH
func (k Keyspace) Role(role uint64) string { return k.base + "role:" + u64(role) }

// User is the projection of user id. HASH
func (k Keyspace) User(user uint64) string { return k.base + "user:" + u64(user) }

// Member is the projection of user id's membership of guild id. HASH
func (k Keyspace) Member(guild, user uint64) string {
	return k.base + "member:" + u64(guild) + ":" + u64(user)
}

// ShardGuilds is the set of guild ids shard id owns. SET
func (k Keyspace) ShardGuilds(shard int) string { return k.base + "shard:" + id(shard) + ":guilds" }

// ShardUnavailable is the set of guild ids of shard id that are unavailable. SET
func (k Keyspace) ShardUnavailable(shard int) string {
	return k.base + "shard:" + id(shard) + ":unavailable"
}

// ShardCounts holds the relation sizes of every guild of shard id: field
// "<guild>" -> "<channels>,<roles>,<members>". Absolute sizes rather than
// counters, so replayed events cannot make them drift; a shard's totals are
// the sum of its HVALS. HASH
func (k Keyspace) ShardCounts(shard int) string { return k.base + "shard:" + id(shard) + ":counts" }

// ShardProjected marks that the projection holds shard id's guilds: the
// cluster running the shard sets it once the shard is connected, and finds
// the projection lost (FLUSHDB, a Redis restarted empty) when it is gone,
// then rebuilds it by re-identifying the shard. STRING
func (k Keyspace) ShardProjected(shard int) string {
	return k.base + "shard:" + id(shard) + ":projected"
}

// Users is the set of every cached user id (the user count is its SCARD). SET
func (k Keyspace) Users() string { return k.base + "users" }

// UserGuilds is the set of cached guild ids user id is a member of. It is the
// user's reference count (the user hash goes when it empties) and tells a
// fetch which cluster can answer for the user. SET
func (k Keyspace) UserGuilds(user uint64) string { return k.base + "user:" + u64(user) + ":guilds" }

// CacheSchema records what the projection keeps: field "<entity>" ->
// comma-separated hash fields, so readers in other processes know whether a
// missing field is null or not projected. HASH
func (k Keyspace) CacheSchema() string { return k.base + "cache:schema" }
