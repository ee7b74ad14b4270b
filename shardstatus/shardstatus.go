// Package shardstatus owns the shard status hash, keyspace.ShardStatus(shard):
// a shard's live state as the cluster running it sees it. The cluster writes
// it (SetState when the shard's status changes, SetHealth every heartbeat
// interval); the launcher deletes the hashes of shards a new plan no longer
// has; inspection reads it (Get, Parse). The layout is spelled out once,
// here:
//
//	status      connecting, ready, resuming, disconnected, stopped
//	cluster     the cluster running the shard
//	latency_ms  the gateway heartbeat latency
//	guilds      the shard's guild count (absent while unknown)
//	updated_at  unix ms of the last write
package shardstatus

import (
	"context"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
)

// Field names of keyspace.ShardStatus.
const (
	// FieldStatus is the shard's status (the Status constants).
	FieldStatus = "status"
	// FieldCluster is the id of the cluster running the shard.
	FieldCluster = "cluster"
	// FieldLatencyMS is the gateway heartbeat latency in milliseconds.
	FieldLatencyMS = "latency_ms"
	// FieldGuilds is the shard's guild count.
	FieldGuilds = "guilds"
	// FieldUpdatedAt is when the hash was last written (unix ms).
	FieldUpdatedAt = "updated_at"
)

// Statuses in FieldStatus.
const (
	Connecting   = "connecting"
	Ready        = "ready"
	Resuming     = "resuming"
	Disconnected = "disconnected"
	Stopped      = "stopped"
)

// Record is a shard status hash, typed.
type Record struct {
	// Status is one of the Status constants; empty when none was written.
	Status string
	// Cluster is the cluster running the shard; -1 when none was written.
	Cluster int
	// LatencyMS is the last heartbeat latency in milliseconds.
	LatencyMS int
	// Guilds is the shard's guild count; -1 when none was written yet.
	Guilds int
	// UpdatedAt is when the hash was last written.
	UpdatedAt time.Time
}

// SetState records the shard's status and the cluster running it. The
// guild count is SetHealth's to write.
func SetState(ctx context.Context, c redis.Cmdable, ks keyspace.Keyspace, shard, cluster int, status string, at time.Time) *redis.IntCmd {
	return c.HSet(ctx, ks.ShardStatus(shard), FieldStatus, status, FieldCluster, cluster, FieldUpdatedAt, at.UnixMilli())
}

// SetHealth records the shard's latency and, when guilds is not negative,
// its guild count.
func SetHealth(ctx context.Context, c redis.Cmdable, ks keyspace.Keyspace, shard int, latencyMS, guilds int64, at time.Time) *redis.IntCmd {
	fields := []any{FieldLatencyMS, latencyMS, FieldUpdatedAt, at.UnixMilli()}
	if guilds >= 0 {
		fields = append(fields, FieldGuilds, guilds)
	}
	return c.HSet(ctx, ks.ShardStatus(shard), fields...)
}

// HasState reports whether the hash holds a status, for a pipelined check
// that Redis kept it.
func HasState(ctx context.Context, c redis.Cmdable, ks keyspace.Keyspace, shard int) *redis.BoolCmd {
	return c.HExists(ctx, ks.ShardStatus(shard), FieldStatus)
}

// Get reads the whole hash (HGETALL), for Parse. A missing hash is an
// empty map.
func Get(ctx context.Context, c redis.Cmdable, ks keyspace.Keyspace, shard int) *redis.MapStringStringCmd {
	return c.HGetAll(ctx, ks.ShardStatus(shard))
}

// Parse reads a Record from the fields Get returned. Malformed numbers
// read as absent.
func Parse(h map[string]string) Record {
	r := Record{Status: h[FieldStatus], Cluster: -1, Guilds: -1}
	if n, err := strconv.Atoi(h[FieldCluster]); err == nil && n >= 0 {
		r.Cluster = n
	}
	r.LatencyMS, _ = strconv.Atoi(h[FieldLatencyMS])
	if n, err := strconv.Atoi(h[FieldGuilds]); err == nil && n >= 0 {
		r.Guilds = n
	}
	if ms, err := strconv.ParseInt(h[FieldUpdatedAt], 10, 64); err == nil && ms > 0 {
		r.UpdatedAt = time.UnixMilli(ms)
	}
	return r
}

// Delete removes the hash of a shard the plan no longer has.
func Delete(ctx context.Context, c redis.Cmdable, ks keyspace.Keyspace, shard int) *redis.IntCmd {
	return c.Del(ctx, ks.ShardStatus(shard))
}
