package redisconn

import (
	"strings"

	"github.com/megane-go/megane/keyspace"
)

// The commands a Megane bot sends, by what it does with them. Scripts count:
// Redis checks the commands a Lua script calls against the user's ACL, so the
// commands of every script (identify, sessions, store) are listed too. A
// command added to the code and missing here makes the bot fail under the
// README's ACL; the end-to-end ACL test (e2e) catches it through ACL LOG.
var botCommands = [][]string{
	// Connection: PING (Open, pub/sub health), SELECT for a /db in the
	// URL; for redis+cluster://, CLUSTER SLOTS (the slot map) and COMMAND
	// (go-redis's cluster client reads the command table once to route;
	// refused, it asks again before every command); TIME (the lease scripts
	// judge expiry by Redis's clock). AUTH and HELLO are always allowed.
	{"+ping", "+select", "+cluster|slots", "+command", "+time"},
	// Strings and key lifetimes: identify locks, heartbeats, store TTLs.
	{"+get", "+set", "+del", "+exists", "+pexpire", "+pttl"},
	// Hashes: gateway, shard map, sessions, status, store, cache, stats.
	{"+hget", "+hgetall", "+hmget", "+hset", "+hdel", "+hexists", "+hincrby", "+hlen", "+hscan", "+hvals"},
	// Sets: cache relations, store buckets.
	{"+sadd", "+srem", "+smembers", "+scard", "+srandmember"},
	// Sorted sets: the IPC node directory, the stats index.
	{"+zadd", "+zrem", "+zrangebyscore", "+zremrangebyscore"},
	// Streams: IPC inboxes and replies, dead letters, lifecycle events.
	{"+xadd", "+xread", "+xrange", "+xrevrange", "+xreadgroup", "+xack", "+xautoclaim", "+xclaim",
		"+xgroup|create", "+xgroup|delconsumer"},
	// Pub/sub: the broadcast channel.
	{"+publish", "+subscribe"},
	// Lua scripts (EVALSHA, EVAL when the script is not cached) and MULTI/EXEC.
	{"+evalsha", "+eval", "+multi", "+exec"},
}

// readOnlyCommands are those of an inspecting user: every read command
// except the ones that reveal the keys of other namespaces (SCAN, RANDOMKEY,
// DBSIZE; KEYS goes with @dangerous), and subscribing to watch the
// broadcast channel.
var readOnlyCommands = [][]string{
	{"+@read", "-@dangerous", "-scan", "-randomkey", "-dbsize"},
	{"+ping", "+select", "+cluster|slots", "+command", "+subscribe"},
}

// BotACL returns the Redis ACL rules for the user a bot's processes connect
// as (the launcher, clusters, services, and megane-cli for its commands that
// act: restart, eval, store set): its namespace's keys and channels, and
// only the commands Megane sends. Use them after "user <name> on >password"
// in an ACL file or "ACL SETUSER <name> reset on >password". Such a user
// cannot list namespaces (SCAN), so megane-cli needs --namespace.
func BotACL(ks keyspace.Keyspace) string { return botACL(ks.Base()) }

// ReadOnlyACL returns the Redis ACL rules of a user that can inspect the
// namespace of ks (megane-cli status, nodes, stats, events, cache, store
// get, deadletter; redis-cli reads) and cannot change anything: its keys are
// read-only (%R~) and only read commands are allowed. Such a user cannot
// list namespaces (SCAN), so megane-cli needs --namespace.
func ReadOnlyACL(ks keyspace.Keyspace) string { return readOnlyACL(ks.Base()) }

func botACL(base string) string {
	return rules("~"+base+"* &"+base+"*", botCommands)
}

func readOnlyACL(base string) string {
	return rules("%R~"+base+"* &"+base+"*", readOnlyCommands)
}

func rules(patterns string, commands [][]string) string {
	parts := []string{patterns, "-@all"}
	for _, group := range commands {
		parts = append(parts, group...)
	}
	return strings.Join(parts, " ")
}
