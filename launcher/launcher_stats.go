package launcher

import (
	"context"

	"github.com/megane-go/megane/redisipc"
	"github.com/megane-go/megane/stats"
)

// startStats publishes the launcher's statistics (keyspace.Stats("launcher"))
// with the fleet's state, and returns the function that stops it.
func (l *Launcher) startStats(ctx context.Context) (*stats.Reporter, func()) {
	r := stats.NewReporter(l.rdb, l.ks, "launcher", stats.Options{Interval: l.cfg.StatsInterval, Logger: l.log})
	_ = r.Add("clusters", func(context.Context) any { return len(l.clusters) })
	_ = r.Add("clusters_ready", func(context.Context) any {
		ready := 0
		for _, p := range l.clusters {
			if p.status().State == StateReady {
				ready++
			}
		}
		return ready
	})
	_ = r.Add("cluster_restarts", func(context.Context) any {
		n := 0
		for _, p := range l.clusters {
			n += p.status().Restarts
		}
		return n
	})
	_ = r.Add(redisipc.CallMetricsField, func(context.Context) any {
		if l.node == nil {
			return []redisipc.CallMetric{}
		}
		return l.node.CallMetrics()
	})
	_ = r.Add("services", func(context.Context) any { return len(l.services) })
	_ = r.Add("shards", func(context.Context) any {
		l.mu.Lock()
		defer l.mu.Unlock()
		return l.shardCount
	})
	sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan struct{})
	go func() {
		defer close(done)
		r.Run(sctx)
	}()
	return r, func() { cancel(); <-done }
}
