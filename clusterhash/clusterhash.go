// Package clusterhash owns the cluster hash, keyspace.Cluster(id): what a
// cluster process and the launcher supervising it record about the cluster.
// Every writer and reader goes through it, so the field names are spelled
// out once. Two writers share the hash, each with its own fields:
//
//   - the cluster process (Register, SetStatus, SetReady, SetStopped,
//     Rewrite): status, pid, host, shards (comma-separated shard ids),
//     shard_count, started_at, ready_at, stopped_at (unix ms);
//   - the launcher (SetSupervision): supervisor and restarts, and status
//     and pid while no process runs, when the hash would otherwise keep
//     describing a dead one.
//
// Readers get the raw fields (Get) and pick them by the Field constants.
package clusterhash

import (
	"context"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
)

// Field names of keyspace.Cluster.
const (
	// FieldStatus is the cluster's status: starting, ready, stopping,
	// stopped, failed (written by the cluster), or the supervisor state
	// while no process runs (written by the launcher).
	FieldStatus = "status"
	// FieldPID is the process id; 0 while no process runs.
	FieldPID = "pid"
	// FieldHost is the host name the process runs on.
	FieldHost = "host"
	// FieldShards lists the cluster's shard ids, comma-separated.
	FieldShards = "shards"
	// FieldShardCount is the bot's shard count the cluster runs under.
	FieldShardCount = "shard_count"
	// FieldStartedAt is when the process registered (unix ms).
	FieldStartedAt = "started_at"
	// FieldReadyAt is when every shard of the cluster was ready (unix ms).
	FieldReadyAt = "ready_at"
	// FieldStoppedAt is when the process stopped (unix ms).
	FieldStoppedAt = "stopped_at"
	// FieldSupervisor is the launcher's view of the cluster: starting,
	// ready, stopping, backoff, gave-up, stopped.
	FieldSupervisor = "supervisor"
	// FieldRestarts counts the launcher's restarts of the cluster.
	FieldRestarts = "restarts"
)

// Statuses a cluster process records in FieldStatus.
const (
	StatusStarting = "starting"
	StatusReady    = "ready"
	StatusStopping = "stopping"
)

// Process is what a cluster process records about itself.
type Process struct {
	// PID is the process id.
	PID int
	// Host is the host name.
	Host string
	// Shards are the cluster's shard ids.
	Shards []int
	// ShardCount is the bot's shard count.
	ShardCount int
	// StartedAt is when the process registered.
	StartedAt time.Time
}

func joinInts(ids []int) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.Itoa(id)
	}
	return strings.Join(s, ",")
}

// Register queues on pipe the hash of a cluster process that starts:
// status starting, its Process fields, and no ready_at or stopped_at left
// from an earlier process.
func Register(ctx context.Context, pipe redis.Pipeliner, ks keyspace.Keyspace, cluster int, p Process) {
	key := ks.Cluster(cluster)
	pipe.HSet(ctx, key,
		FieldStatus, StatusStarting, FieldPID, p.PID, FieldHost, p.Host,
		FieldShards, joinInts(p.Shards), FieldShardCount, p.ShardCount,
		FieldStartedAt, p.StartedAt.UnixMilli())
	pipe.HDel(ctx, key, FieldReadyAt, FieldStoppedAt)
}

// Rewrite writes a running process's fields again, as Register and
// SetReady wrote them, after Redis lost the hash: status is ready with
// ready_at when readyAt is set, starting otherwise.
func Rewrite(ctx context.Context, c redis.Cmdable, ks keyspace.Keyspace, cluster int, p Process, readyAt time.Time) *redis.IntCmd {
	status := StatusStarting
	fields := []any{FieldPID, p.PID, FieldHost, p.Host, FieldShards, joinInts(p.Shards),
		FieldShardCount, p.ShardCount, FieldStartedAt, p.StartedAt.UnixMilli()}
	if !readyAt.IsZero() {
		status = StatusReady
		fields = append(fields, FieldReadyAt, readyAt.UnixMilli())
	}
	return c.HSet(ctx, ks.Cluster(cluster), append(fields, FieldStatus, status)...)
}

// SetStatus records status alone.
func SetStatus(ctx context.Context, c redis.Cmdable, ks keyspace.Keyspace, cluster int, status string) *redis.IntCmd {
	return c.HSet(ctx, ks.Cluster(cluster), FieldStatus, status)
}

// SetReady records that every shard of the cluster is ready.
func SetReady(ctx context.Context, c redis.Cmdable, ks keyspace.Keyspace, cluster int, at time.Time) *redis.IntCmd {
	return c.HSet(ctx, ks.Cluster(cluster), FieldStatus, StatusReady, FieldReadyAt, at.UnixMilli())
}

// SetStopped records the process's final status and when it stopped.
func SetStopped(ctx context.Context, c redis.Cmdable, ks keyspace.Keyspace, cluster int, status string, at time.Time) *redis.IntCmd {
	return c.HSet(ctx, ks.Cluster(cluster), FieldStatus, status, FieldStoppedAt, at.UnixMilli())
}

// Supervision is the launcher's view of a cluster.
type Supervision struct {
	// State is the supervisor state (FieldSupervisor).
	State string
	// Restarts counts the launcher's restarts of the cluster.
	Restarts int
	// Running tells whether a process runs. Without one the launcher also
	// owns status (set to State) and pid (0).
	Running bool
}

// SetSupervision records the launcher's fields.
func SetSupervision(ctx context.Context, c redis.Cmdable, ks keyspace.Keyspace, cluster int, s Supervision) *redis.IntCmd {
	fields := []any{FieldSupervisor, s.State, FieldRestarts, s.Restarts}
	if !s.Running {
		fields = append(fields, FieldStatus, s.State, FieldPID, 0)
	}
	return c.HSet(ctx, ks.Cluster(cluster), fields...)
}

// HasProcess reports whether the hash holds a process's fields (its
// host), for a pipelined check that Redis kept them.
func HasProcess(ctx context.Context, c redis.Cmdable, ks keyspace.Keyspace, cluster int) *redis.BoolCmd {
	return c.HExists(ctx, ks.Cluster(cluster), FieldHost)
}

// HasSupervision reports whether the hash holds the launcher's fields,
// for a pipelined check that Redis kept them.
func HasSupervision(ctx context.Context, c redis.Cmdable, ks keyspace.Keyspace, cluster int) *redis.BoolCmd {
	return c.HExists(ctx, ks.Cluster(cluster), FieldSupervisor)
}

// Get reads the whole hash (HGETALL); pick fields with the Field
// constants. A missing hash is an empty map.
func Get(ctx context.Context, c redis.Cmdable, ks keyspace.Keyspace, cluster int) *redis.MapStringStringCmd {
	return c.HGetAll(ctx, ks.Cluster(cluster))
}

// Delete removes the hash of a cluster the plan no longer has.
func Delete(ctx context.Context, c redis.Cmdable, ks keyspace.Keyspace, cluster int) *redis.IntCmd {
	return c.Del(ctx, ks.Cluster(cluster))
}
