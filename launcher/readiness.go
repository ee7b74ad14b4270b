package launcher

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/megane-go/megane/launcherhash"
	"github.com/megane-go/megane/lifecycle"
)

// AllReady is closed the first time every cluster is ready.
func (l *Launcher) AllReady() <-chan struct{} { return l.readyCh }

// clusterReady is called by a cluster that became ready; the first time all
// are ready, AllClustersReady fires.
func (l *Launcher) clusterReady() {
	for _, p := range l.clusters {
		if owned, _, _ := p.own.get(); !owned {
			continue // another launcher's (several per bot)
		}
		if p.currentState() != StateReady {
			return
		}
	}
	l.mu.Lock()
	first := !l.allReady
	if first {
		l.allReady, l.allReadyAt = true, time.Now()
	}
	at := l.allReadyAt
	l.mu.Unlock()
	if !first {
		return
	}
	close(l.readyCh)
	l.log.Info("all clusters ready",
		slog.Int("clusters", len(l.clusters)), slog.Int("shards", l.shardCount),
		slog.Duration("elapsed", time.Since(l.startedAt).Round(time.Millisecond)))
	l.sink.event(lifecycle.Event{Type: lifecycle.AllClustersReady, Cluster: -1, Shard: -1,
		Detail: fmt.Sprintf("%d clusters, %d shards", len(l.clusters), l.shardCount)})
	l.sink.do(func(ctx context.Context) error {
		return launcherhash.SetAllReady(ctx, l.rdb, l.ks, at).Err()
	})
}

func (l *Launcher) setLauncherStatus(status string) {
	if l.sink == nil {
		return
	}
	rec := l.launcherRecord(status)
	l.sink.do(func(ctx context.Context) error {
		return launcherhash.Write(ctx, l.rdb, l.ks, rec).Err()
	})
}

// launcherRecord is the launcher's hash (keyspace.Launcher) with status.
func (l *Launcher) launcherRecord(status string) launcherhash.Record {
	host, _ := os.Hostname()
	l.mu.Lock()
	allReadyAt := l.allReadyAt
	l.mu.Unlock()
	return launcherhash.Record{Status: status, PID: os.Getpid(), Host: host,
		StartedAt: l.startedAt, Clusters: len(l.clusters), ShardCount: l.shardCount,
		MaxConcurrency: l.maxConcurrency, AllReadyAt: allReadyAt}
}
