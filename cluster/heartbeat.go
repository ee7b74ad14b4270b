package cluster

import (
	"context"
	"log/slog"
	"time"

	"github.com/megane-go/megane/shardstatus"
)

// heartbeat refreshes keyspace.ClusterHeartbeat with a TTL of three
// intervals, and the shards' latencies and guild counts (guildCounts). It skips the refresh while an
// event has been in its handlers longer than StallTimeout: every shard of
// the process waits behind it, and the launcher should replace the
// process, which then resumes.
func (r *runner) heartbeat(ctx context.Context) {
	defer r.recoverCallback("heartbeat")
	interval := r.o.HeartbeatInterval
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		if d, shard := r.track.stalled(); d > r.o.StallTimeout {
			r.log.Error("cluster: an event handler is stuck; heartbeat withheld",
				slog.Int("shard_id", shard), slog.Duration("stuck_for", d))
		} else {
			guilds, err := r.guildCounts(ctx)
			if err != nil && ctx.Err() == nil {
				r.log.Debug("cluster: reading guild counts", slog.Any("error", err))
			}
			now := time.Now()
			pipe := r.rdb.Pipeline()
			pipe.Set(ctx, r.ks.ClusterHeartbeat(r.o.ID), now.UnixMilli(), 3*interval)
			for id, ms := range r.track.latencies() {
				n, ok := guilds[id]
				if !ok {
					n = -1
				}
				shardstatus.SetHealth(ctx, pipe, r.ks, id, ms, n, now)
			}
			if _, err := pipe.Exec(ctx); err != nil && ctx.Err() == nil {
				r.log.Warn("cluster: heartbeat failed", slog.Any("error", err))
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
	}
}
