package monitor

import (
	"context"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/lifecycle"
)

// exitCounter counts the lifecycle events of the bot by type, and the
// clusters' exits by reason, from the events stream: it reads the stream
// from its start once, then what is new at each scrape. Every launcher
// reads the same stream, so every launcher exports the same counts (events
// trimmed from the stream before the first scrape are not counted).
type exitCounter struct {
	rdb redis.UniversalClient
	ks  keyspace.Keyspace

	mu     sync.Mutex
	after  string
	byType map[string]uint64
	exits  map[exitKey]uint64
	// pending is a cluster's reason given by an event before its exit
	// (unresponsive, lease lost): the exit that follows takes it.
	pending map[int]string
}

type exitKey struct {
	cluster int
	reason  string
}

// Exit reasons of megane_cluster_exits_total.
const (
	reasonCrashed      = "crashed"
	reasonUnresponsive = "unresponsive"
	reasonRequested    = "requested"
	reasonShutdown     = "shutdown"
	reasonLeaseLost    = "lease_lost"
)

// maxReadsPerScrape bounds the stream reads of one scrape (1000 events
// each); the rest is read at the next one.
const maxReadsPerScrape = 20

func newExitCounter(rdb redis.UniversalClient, ks keyspace.Keyspace) *exitCounter {
	return &exitCounter{rdb: rdb, ks: ks, byType: map[string]uint64{}, exits: map[exitKey]uint64{}, pending: map[int]string{}}
}

// update reads the events published since the last call.
func (e *exitCounter) update(ctx context.Context) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	for range maxReadsPerScrape {
		evs, next, err := lifecycle.Read(ctx, e.rdb, e.ks, e.after, 1000)
		if err != nil {
			return err
		}
		for _, ev := range evs {
			e.count(ev)
		}
		e.after = next
		if len(evs) < 1000 {
			return nil
		}
	}
	return nil
}

func (e *exitCounter) count(ev lifecycle.Event) {
	e.byType[string(ev.Type)]++
	switch ev.Type {
	case lifecycle.ClusterUnresponsive:
		e.pending[ev.Cluster] = reasonUnresponsive
	case lifecycle.ClusterLeaseLost:
		e.pending[ev.Cluster] = reasonLeaseLost
	case lifecycle.ClusterExited:
		reason := reasonCrashed
		switch {
		case e.pending[ev.Cluster] != "":
			reason = e.pending[ev.Cluster]
		case strings.HasPrefix(ev.Detail, "restart requested"):
			reason = reasonRequested
		case strings.HasPrefix(ev.Detail, "launcher stopping"):
			reason = reasonShutdown
		case strings.Contains(ev.Detail, "lease"):
			reason = reasonLeaseLost
		}
		delete(e.pending, ev.Cluster)
		e.exits[exitKey{ev.Cluster, reason}]++
	}
}

// counts returns copies of the counts.
func (e *exitCounter) counts() (map[string]uint64, map[exitKey]uint64) {
	e.mu.Lock()
	defer e.mu.Unlock()
	byType := make(map[string]uint64, len(e.byType))
	for k, v := range e.byType {
		byType[k] = v
	}
	exits := make(map[exitKey]uint64, len(e.exits))
	for k, v := range e.exits {
		exits[k] = v
	}
	return byType, exits
}
