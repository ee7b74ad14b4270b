package redisipc

import (
	"context"
	"runtime"
	"time"
)

// Versions of the built-in replies this package sends. A reader that gets
// a newer version than it knows may find fields it does not understand;
// the fields it knows keep their meaning.
const (
	// PingVersion is the version of PingReply.
	PingVersion = 1
	// StatsVersion is the version of StatsReply.
	StatsVersion = 1
)

// PingReply is a node's answer to OpPing.
type PingReply struct {
	// Version is PingVersion of the answering node.
	Version int `json:"version"`
	// Addr is the node's address.
	Addr string `json:"addr"`
	// Instance is the answering process's instance name.
	Instance string `json:"instance"`
}

// StatsReply is a node's answer to OpStats: its IPC counters, a cluster's
// own figures, and the statistics the process adds.
type StatsReply struct {
	// Version is StatsVersion of the answering node.
	Version int `json:"version"`
	// Addr is the node's address.
	Addr string `json:"addr"`
	// Instance is the answering process's instance name.
	Instance string `json:"instance"`
	// Handled counts requests the node's handlers answered.
	Handled int64 `json:"handled"`
	// Failed counts requests whose handler returned an error.
	Failed int64 `json:"failed"`
	// Dropped counts requests dropped unanswered (past their deadline,
	// malformed).
	Dropped int64 `json:"dropped"`
	// DeadLetters counts entries the node wrote to the dead-letter stream.
	DeadLetters int64 `json:"dead_letters"`
	// InFlight is the number of requests being handled now.
	InFlight int `json:"in_flight"`
	// UptimeSeconds is the time since the node started.
	UptimeSeconds float64 `json:"uptime_seconds"`
	// Goroutines is the process's goroutine count.
	Goroutines int `json:"goroutines"`
	// HeapAlloc is the process's allocated heap in bytes.
	HeapAlloc uint64 `json:"heap_alloc"`
	// Cluster holds a cluster process's figures; nil for other nodes.
	Cluster *ClusterStats `json:"cluster,omitempty"`
	// Fields are the statistics the process adds of its own: what its
	// stats reporter publishes beyond the built-in figures (a cluster's
	// guilds and latency, a service's name and copy, every Stats.Add
	// field and a service Worker's Statser map). Values keep their JSON
	// types.
	Fields map[string]any `json:"fields,omitempty"`
}

// ClusterStats is what a cluster process adds to its StatsReply.
type ClusterStats struct {
	// ID is the cluster's id.
	ID int `json:"id"`
	// Shards are the cluster's shard ids.
	Shards []int `json:"shards"`
	// ShardCount is the bot's shard count.
	ShardCount int `json:"shard_count"`
	// OwnerFetches counts fetch requests the cluster answered for other
	// processes as the owner of the guild; OwnerFetchErrors those that
	// failed.
	OwnerFetches     int64 `json:"owner_fetches"`
	OwnerFetchErrors int64 `json:"owner_fetch_errors"`
	// OwnerREST counts the REST calls the cluster's owner lookups made, and
	// OwnerRESTCached the lookups its REST cache answered instead.
	OwnerREST       int64 `json:"owner_rest"`
	OwnerRESTCached int64 `json:"owner_rest_cached"`
	// Cache holds the projector's counters; nil when the projection is off.
	Cache *ProjectionStats `json:"cache,omitempty"`
}

// ProjectionStats are a cluster's cache projector counters.
type ProjectionStats struct {
	// Events counts the events the projector accepted.
	Events uint64 `json:"events"`
	// Written counts the events written to Redis.
	Written uint64 `json:"written"`
	// Drops counts the events the projector refused (queue full).
	Drops uint64 `json:"drops"`
	// Queued is the number of events waiting now.
	Queued int `json:"queued"`
}

// StatsFunc adds a process's own figures to its StatsReply (see
// Node.SetStats).
type StatsFunc func(ctx context.Context, r *StatsReply)

// SetStats sets the function that adds the process's own figures to the
// node's OpStats answer: Fields, and Cluster on a cluster. Nil removes it.
func (n *Node) SetStats(f StatsFunc) {
	n.mu.Lock()
	n.statsFn = f
	n.mu.Unlock()
}

// Stats returns the node's own OpStats answer: its counters, completed by
// the SetStats function.
func (n *Node) Stats(ctx context.Context) StatsReply {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	r := StatsReply{
		Version: StatsVersion, Addr: n.addr, Instance: n.inst,
		Handled: n.handled.Load(), Failed: n.failed.Load(), Dropped: n.dropped.Load(),
		DeadLetters: n.deadLetters.Load(), InFlight: len(n.sem),
		UptimeSeconds: time.Since(n.started).Seconds(), Goroutines: runtime.NumGoroutine(),
		HeapAlloc: m.HeapAlloc,
	}
	n.mu.RLock()
	f := n.statsFn
	n.mu.RUnlock()
	if f != nil {
		f(ctx, &r)
	}
	return r
}

// Ping asks the node at address to for OpPing.
func (n *Node) Ping(ctx context.Context, to string) (PingReply, error) {
	var r PingReply
	err := n.CallJSON(ctx, to, OpPing, nil, &r)
	return r, err
}

// StatsOf asks the node at address to for its OpStats answer.
func (n *Node) StatsOf(ctx context.Context, to string) (StatsReply, error) {
	var r StatsReply
	err := n.CallJSON(ctx, to, OpStats, nil, &r)
	return r, err
}
