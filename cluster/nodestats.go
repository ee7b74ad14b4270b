package cluster

import (
	"context"
	"log/slog"

	"github.com/megane-go/megane/redisipc"
	"github.com/megane-go/megane/stats"
)

// addStats registers the cluster's figures with its reporter.
func (r *runner) addStats(rep *stats.Reporter) {
	add := func(name string, c stats.Collector) {
		if err := rep.Add(name, c); err != nil {
			r.log.Warn("cluster: stats collector", slog.String("name", name), slog.Any("error", err))
		}
	}
	add("cluster", func(context.Context) any { return r.o.ID })
	add("shards", func(context.Context) any { return len(r.ids) })
	add("shard_count", func(context.Context) any { return r.track.shardCount })
	add("shards_ready", func(context.Context) any {
		n := 0
		for _, s := range r.track.snapshot() {
			if s.Status == statusReady {
				n++
			}
		}
		return n
	})
	add("guilds", func(ctx context.Context) any { return r.clusterGuilds(ctx) })
	add("latency_ms", func(context.Context) any { return r.track.averageLatency() })
	add("owner_fetches", func(context.Context) any { return r.sh.ownerFetches.Load() })
	add("owner_rest", func(context.Context) any { return r.sh.ownerREST.Load() })
	add("owner_rest_cached", func(context.Context) any { return r.sh.ownerCached.Load() })
	add("gateway_events", func(context.Context) any { return r.sh.events.snapshot() })
	add(redisipc.CallMetricsField, func(context.Context) any { return r.sh.node.CallMetrics() })
	add("identify_waits", func(context.Context) any {
		if r.limiter == nil {
			return 0
		}
		return r.limiter.WaitStats().Waits
	})
	add("identify_wait_seconds", func(context.Context) any {
		if r.limiter == nil {
			return 0.0
		}
		return r.limiter.WaitStats().Seconds
	})
	if p := r.sh.proj; p != nil {
		add("cache_events", func(context.Context) any { return p.Stats().Events })
		add("cache_written", func(context.Context) any { return p.Stats().Written })
		add("cache_drops", func(context.Context) any { return p.Stats().Drops })
		add("cache_queued", func(context.Context) any { return p.Stats().Queued })
	}
}

// nodeStats is the cluster's part of the node's "$stats" answer.
func (r *runner) nodeStats() *redisipc.ClusterStats {
	out := &redisipc.ClusterStats{
		ID: r.o.ID, Shards: append([]int(nil), r.ids...), ShardCount: r.track.shardCount,
		OwnerFetches: r.sh.ownerFetches.Load(), OwnerFetchErrors: r.sh.ownerErrors.Load(),
		OwnerREST: r.sh.ownerREST.Load(), OwnerRESTCached: r.sh.ownerCached.Load(),
	}
	if p := r.sh.proj; p != nil {
		st := p.Stats()
		out.Cache = &redisipc.ProjectionStats{Events: st.Events, Written: st.Written, Drops: st.Drops, Queued: st.Queued}
	}
	return out
}
