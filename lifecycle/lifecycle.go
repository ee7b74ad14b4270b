// Package lifecycle records what happens to clusters, shards and services
// (spawned, ready, exited, resumed, …) as entries of one capped Redis stream,
// keyspace.Events(). Every process appends to it; user code, the CLI and
// tests read it, live or after the fact, with Read and Follow.
//
// An entry's fields are type, cluster, shard, service, at (unix ms) and
// detail, readable as they are with redis-cli XRANGE.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
)

// Type names a lifecycle event.
type Type string

// Event types.
const (
	// ClusterSpawned: the launcher started a cluster process.
	ClusterSpawned Type = "cluster_spawned"
	// ClusterReady: every shard of a cluster is READY or RESUMED.
	ClusterReady Type = "cluster_ready"
	// ClusterExited: a cluster process ended; Detail says how.
	ClusterExited Type = "cluster_exited"
	// ClusterRestarted: the launcher started a cluster again after it exited
	// or was restarted on request.
	ClusterRestarted Type = "cluster_restarted"
	// ClusterGaveUp: the launcher stopped restarting a cluster that kept
	// failing.
	ClusterGaveUp Type = "cluster_gave_up"
	// ClusterUnresponsive: a cluster's heartbeat went stale.
	ClusterUnresponsive Type = "cluster_unresponsive"
	// ClusterClaimed: a launcher took a cluster's lease (several launchers
	// per bot); the detail names the launcher and the token.
	ClusterClaimed Type = "cluster_claimed"
	// ClusterLeaseLost: a launcher lost a cluster's lease (it expired, or
	// another launcher claimed it) and stopped its process.
	ClusterLeaseLost Type = "cluster_lease_lost"
	// ClusterUnowned: no launcher holds a cluster's lease and none has the
	// capacity to take it: its shards are offline.
	ClusterUnowned Type = "cluster_unowned"
	// RollStep: one step of a rolling restart is done; the detail names the
	// processes and what the step cost (duration, resumed, identified,
	// replayed, or the error).
	RollStep Type = "roll_step"
	// ReshardStep: a re-shard made progress (a new-generation cluster is
	// ready, the switch began or ended, the re-shard failed and was rolled
	// back); the detail says which.
	ReshardStep Type = "reshard_step"
	// AllClustersReady: every cluster of the launcher is ready.
	AllClustersReady Type = "all_clusters_ready"
	// ShardReady: a shard received READY (it IDENTIFYed).
	ShardReady Type = "shard_ready"
	// ShardResumed: a shard received RESUMED. The first after a process
	// started from a saved session says "replayed N": the dispatches Discord
	// replayed before RESUMED.
	ShardResumed Type = "shard_resumed"
	// ShardDisconnected: a shard lost its connection or was stopped.
	ShardDisconnected Type = "shard_disconnected"
	// ServiceSpawned: the launcher started a service process. The Detail of
	// every service event starts with the copy ("copy 0"), then "; " and
	// the rest when there is more to say ("copy 1; pid 4242").
	ServiceSpawned Type = "service_spawned"
	// ServiceReady: a service finished launching.
	ServiceReady Type = "service_ready"
	// ServiceExited: a service process ended.
	ServiceExited Type = "service_exited"
)

// MaxLen is the approximate number of events the stream keeps.
const MaxLen = 10000

// Event is one lifecycle event.
type Event struct {
	// ID is the stream entry id; set by Read and Follow, ignored by Publish.
	ID string
	// Type is what happened.
	Type Type
	// Cluster is the cluster id, or -1 when the event is not about a cluster.
	Cluster int
	// Shard is the shard id, or -1 when the event is not about a shard.
	Shard int
	// Service is the service name, or empty.
	Service string
	// At is when it happened; Publish uses now when zero.
	At time.Time
	// Detail is free text: an exit status, an error, a duration.
	Detail string
}

// ClusterEvent returns an event of type t about cluster (no shard, no service).
func ClusterEvent(t Type, cluster int, detail string) Event {
	return Event{Type: t, Cluster: cluster, Shard: -1, Detail: detail}
}

// ShardEvent returns an event of type t about shard of cluster.
func ShardEvent(t Type, cluster, shard int, detail string) Event {
	return Event{Type: t, Cluster: cluster, Shard: shard, Detail: detail}
}

// ServiceEvent returns an event of type t about service name.
func ServiceEvent(t Type, name, detail string) Event {
	return Event{Type: t, Cluster: -1, Shard: -1, Service: name, Detail: detail}
}

// Publish appends ev to keyspace.Events(), trimming the stream to about
// MaxLen entries.
func Publish(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace, ev Event) error {
	if err := publishCmd(ctx, rdb, ks, ev).Err(); err != nil {
		return fmt.Errorf("lifecycle: publish %s: %w", ev.Type, err)
	}
	return nil
}

// PublishPipe queues ev on pipe, for callers that batch it with other writes.
func PublishPipe(ctx context.Context, pipe redis.Pipeliner, ks keyspace.Keyspace, ev Event) {
	publishCmd(ctx, pipe, ks, ev)
}

func publishCmd(ctx context.Context, c redis.StreamCmdable, ks keyspace.Keyspace, ev Event) *redis.StringCmd {
	at := ev.At
	if at.IsZero() {
		at = time.Now()
	}
	return c.XAdd(ctx, &redis.XAddArgs{
		Stream: ks.Events(),
		MaxLen: MaxLen,
		Approx: true,
		Values: []any{
			"type", string(ev.Type),
			"cluster", ev.Cluster,
			"shard", ev.Shard,
			"service", ev.Service,
			"at", at.UnixMilli(),
			"detail", ev.Detail,
		},
	})
}

// Read returns up to count events after the entry id after (all events from
// the start when after is empty), oldest first, and the id to pass as after
// next time (after itself when there was nothing new).
func Read(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace, after string, count int) ([]Event, string, error) {
	start := "-"
	if after != "" {
		start = "(" + after
	}
	if count <= 0 {
		count = 100
	}
	msgs, err := rdb.XRangeN(ctx, ks.Events(), start, "+", int64(count)).Result()
	if err != nil {
		return nil, after, fmt.Errorf("lifecycle: read: %w", err)
	}
	return decodeAll(msgs, after)
}

// Follow waits up to block for events after the entry id after ("" for all,
// "$" for only those published from now on) and returns them with the id to
// continue from. It returns no events and no error when block passes
// quietly; the returned id is then a concrete id even for "$", so a loop of
// Follow calls misses nothing published between them.
func Follow(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace, after string, count int, block time.Duration) ([]Event, string, error) {
	switch after {
	case "":
		after = "0-0"
	case "$":
		last, err := rdb.XRevRangeN(ctx, ks.Events(), "+", "-", 1).Result()
		if err != nil {
			return nil, after, fmt.Errorf("lifecycle: follow: %w", err)
		}
		after = "0-0"
		if len(last) > 0 {
			after = last[0].ID
		}
	}
	if count <= 0 {
		count = 100
	}
	res, err := rdb.XRead(ctx, &redis.XReadArgs{
		Streams: []string{ks.Events(), after},
		Count:   int64(count),
		Block:   block,
	}).Result()
	if errors.Is(err, redis.Nil) {
		return nil, after, nil
	}
	if err != nil {
		return nil, after, fmt.Errorf("lifecycle: follow: %w", err)
	}
	if len(res) == 0 {
		return nil, after, nil
	}
	return decodeAll(res[0].Messages, after)
}

func decodeAll(msgs []redis.XMessage, last string) ([]Event, string, error) {
	out := make([]Event, 0, len(msgs))
	for _, m := range msgs {
		out = append(out, decode(m))
		last = m.ID
	}
	return out, last, nil
}

func decode(m redis.XMessage) Event {
	str := func(k string) string {
		s, _ := m.Values[k].(string)
		return s
	}
	num := func(k string) int {
		n, err := strconv.Atoi(str(k))
		if err != nil {
			return -1
		}
		return n
	}
	ev := Event{
		ID:      m.ID,
		Type:    Type(str("type")),
		Cluster: num("cluster"),
		Shard:   num("shard"),
		Service: str("service"),
		Detail:  str("detail"),
	}
	if ms, err := strconv.ParseInt(str("at"), 10, 64); err == nil {
		ev.At = time.UnixMilli(ms)
	}
	return ev
}

// Delete removes the events stream (a re-shard's staging keyspace, once
// the switch is over).
func Delete(ctx context.Context, c redis.Cmdable, ks keyspace.Keyspace) *redis.IntCmd {
	return c.Del(ctx, ks.Events())
}
