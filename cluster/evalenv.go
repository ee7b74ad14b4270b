package cluster

import (
	"context"
	"time"

	"github.com/megane-go/megane/cache"
	"github.com/megane-go/megane/redisipc"
)

// evalCountTimeout bounds the Redis reads behind one evaluated value.
const evalCountTimeout = 2 * time.Second

// exposeEval adds the cluster's values to its eval environment. See the
// package documentation for the list.
func (r *runner) exposeEval(env *redisipc.EvalEnv) {
	env.Set("cluster", r.o.ID)
	env.Set("shards", append([]int(nil), r.ids...))
	env.Set("shard_ids", append([]int(nil), r.ids...))
	env.Set("shard_count", r.track.shardCount)
	env.Provide("shard_statuses", func() any {
		ctx, cancel := context.WithTimeout(context.Background(), evalCountTimeout)
		defer cancel()
		counts := r.evalCounts(ctx)
		snap := r.track.snapshot()
		out := make([]map[string]any, len(snap))
		for i, s := range snap {
			guilds, ok := counts.guilds[s.ID]
			if !ok {
				guilds = -1
			}
			out[i] = map[string]any{"id": s.ID, "status": s.Status, "latency_ms": s.LatencyMS, "guilds": guilds}
		}
		return out
	})
	env.Provide("ready", func() any {
		select {
		case <-r.track.ready:
			return true
		default:
			return false
		}
	})
	env.Provide("latency_ms", func() any { return r.track.averageLatency() })
	env.Provide("guilds", func() any {
		ctx, cancel := context.WithTimeout(context.Background(), evalCountTimeout)
		defer cancel()
		return sumGuilds(r.evalCounts(ctx).guilds, r.ids)
	})
	if r.sh.proj == nil {
		return
	}
	count := func(pick func(cache.Counts) int64) func() any {
		return func() any {
			ctx, cancel := context.WithTimeout(context.Background(), evalCountTimeout)
			defer cancel()
			var sum cache.Counts
			for _, c := range r.evalCounts(ctx).byShard {
				sum.Add(c)
			}
			return pick(sum)
		}
	}
	env.Provide("users", count(func(n cache.Counts) int64 { return n.Users }))
	env.Provide("channels", count(func(n cache.Counts) int64 { return n.Channels }))
	env.Provide("roles", count(func(n cache.Counts) int64 { return n.Roles }))
	env.Provide("members", count(func(n cache.Counts) int64 { return n.Members }))
	env.Provide("unavailable", count(func(n cache.Counts) int64 { return n.Unavailable }))
	// A function, not a value: it reads every shard's counts, which only
	// the expressions that ask for it should pay for.
	env.Set("total_counts", func() map[string]any {
		ctx, cancel := context.WithTimeout(context.Background(), evalCountTimeout)
		defer cancel()
		n, err := r.sh.reader.TotalCounts(ctx)
		if err != nil {
			return map[string]any{"error": err.Error()}
		}
		return countsMap(n)
	})
}

func countsMap(n cache.Counts) map[string]any {
	return map[string]any{
		"guilds": n.Guilds, "unavailable": n.Unavailable, "channels": n.Channels,
		"roles": n.Roles, "members": n.Members, "users": n.Users,
	}
}
