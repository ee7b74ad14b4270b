// Package launcherhash owns the launcher's hash, keyspace.Launcher: what
// the launcher records about itself. The launcher writes it (Write at start
// and with every health probe, SetAllReady once every cluster is ready);
// inspection and megane-cli read it (Read, ReadStatus). The layout is
// spelled out once, here:
//
//	status           running, stopped
//	pid, host        the launcher process
//	started_at       unix ms
//	clusters         clusters planned
//	shard_count      the bot's shard count
//	max_concurrency  the effective identify concurrency
//	all_ready_at     unix ms of the first time every cluster was ready
//
// Whether the hash exists also tells whether a launcher ever ran in a
// namespace (Exists).
package launcherhash

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
)

// Field names of keyspace.Launcher.
const (
	// FieldStatus is StatusRunning or StatusStopped.
	FieldStatus = "status"
	// FieldPID is the launcher's process id.
	FieldPID = "pid"
	// FieldHost is the host name the launcher runs on.
	FieldHost = "host"
	// FieldStartedAt is when the launcher started (unix ms).
	FieldStartedAt = "started_at"
	// FieldClusters is the number of clusters planned.
	FieldClusters = "clusters"
	// FieldShardCount is the bot's shard count.
	FieldShardCount = "shard_count"
	// FieldMaxConcurrency is the effective identify concurrency.
	FieldMaxConcurrency = "max_concurrency"
	// FieldAllReadyAt is when every cluster was first ready (unix ms).
	FieldAllReadyAt = "all_ready_at"
)

// Statuses in FieldStatus.
const (
	StatusRunning = "running"
	StatusStopped = "stopped"
)

// Record is the launcher's hash, typed.
type Record struct {
	// Status is StatusRunning or StatusStopped.
	Status string `json:"status"`
	// PID is the launcher's process id.
	PID int `json:"pid"`
	// Host is the host name the launcher runs on.
	Host string `json:"host"`
	// StartedAt is when the launcher started.
	StartedAt time.Time `json:"started_at,omitzero"`
	// Clusters is the number of clusters planned.
	Clusters int `json:"clusters"`
	// ShardCount is the bot's shard count.
	ShardCount int `json:"shard_count"`
	// MaxConcurrency is the effective identify concurrency.
	MaxConcurrency int `json:"max_concurrency"`
	// AllReadyAt is when every cluster was first ready; zero until then.
	AllReadyAt time.Time `json:"all_ready_at,omitzero"`
}

// Write writes r's fields; a zero AllReadyAt is not written (nor
// removed). On a pipeline the command's error arrives with Exec.
func Write(ctx context.Context, c redis.Cmdable, ks keyspace.Keyspace, r Record) *redis.IntCmd {
	fields := []any{FieldStatus, r.Status, FieldPID, r.PID, FieldHost, r.Host,
		FieldStartedAt, unixMilli(r.StartedAt), FieldClusters, r.Clusters,
		FieldShardCount, r.ShardCount, FieldMaxConcurrency, r.MaxConcurrency}
	if !r.AllReadyAt.IsZero() {
		fields = append(fields, FieldAllReadyAt, r.AllReadyAt.UnixMilli())
	}
	return c.HSet(ctx, ks.Launcher(), fields...)
}

// SetAllReady records when every cluster was first ready.
func SetAllReady(ctx context.Context, c redis.Cmdable, ks keyspace.Keyspace, at time.Time) *redis.IntCmd {
	return c.HSet(ctx, ks.Launcher(), FieldAllReadyAt, at.UnixMilli())
}

// Exists counts the hash (EXISTS: 0 or 1): a launcher has run in the
// namespace, and Redis still holds its record.
func Exists(ctx context.Context, c redis.Cmdable, ks keyspace.Keyspace) *redis.IntCmd {
	return c.Exists(ctx, ks.Launcher())
}

// Parse reads a Record from the fields of an HGETALL of keyspace.Launcher.
// Missing or malformed values are zero.
func Parse(h map[string]string) Record {
	return Record{
		Status:         h[FieldStatus],
		PID:            atoi(h[FieldPID]),
		Host:           h[FieldHost],
		StartedAt:      fromMilli(h[FieldStartedAt]),
		Clusters:       atoi(h[FieldClusters]),
		ShardCount:     atoi(h[FieldShardCount]),
		MaxConcurrency: atoi(h[FieldMaxConcurrency]),
		AllReadyAt:     fromMilli(h[FieldAllReadyAt]),
	}
}

// Read reads the hash; ok is false when there is none.
func Read(ctx context.Context, c redis.Cmdable, ks keyspace.Keyspace) (r Record, ok bool, err error) {
	h, err := c.HGetAll(ctx, ks.Launcher()).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return Record{}, false, fmt.Errorf("launcherhash: read: %w", err)
	}
	if len(h) == 0 {
		return Record{}, false, nil
	}
	return Parse(h), true, nil
}

// ReadStatus reads only the status; "" when no launcher recorded one.
func ReadStatus(ctx context.Context, c redis.Cmdable, ks keyspace.Keyspace) (string, error) {
	st, err := c.HGet(ctx, ks.Launcher(), FieldStatus).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return "", fmt.Errorf("launcherhash: read status: %w", err)
	}
	return st, nil
}

func unixMilli(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.UnixMilli()
}

func fromMilli(s string) time.Time {
	ms, err := strconv.ParseInt(s, 10, 64)
	if err != nil || ms <= 0 {
		return time.Time{}
	}
	return time.UnixMilli(ms)
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// SetShardCount records a new shard count (a re-shard).
func SetShardCount(ctx context.Context, c redis.Cmdable, ks keyspace.Keyspace, shards int) *redis.IntCmd {
	return c.HSet(ctx, ks.Launcher(), FieldShardCount, shards)
}
