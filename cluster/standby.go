package cluster

import (
	"context"
	"log/slog"
	"time"
)

// standbyWorker is the Worker of a standby cluster (Options.Standby): the
// user's code starts only once the shards serve the bot.
type standbyWorker struct{}

func (standbyWorker) Launch(context.Context, *Cluster) error { return nil }

// waitGuilds waits, after every shard's READY, until the guilds READY
// announced have all arrived, at most StandbyGuildWait; false when ctx
// ended first.
func (r *runner) waitGuilds(ctx context.Context) bool {
	deadline := time.Now().Add(StandbyGuildWait)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		pending := r.track.pendingGuilds()
		if pending == 0 {
			return true
		}
		if time.Now().After(deadline) {
			r.log.Warn("cluster: standby ready with guilds still unavailable",
				slog.Int("unavailable", pending), slog.Duration("waited", StandbyGuildWait))
			return true
		}
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
	}
}
