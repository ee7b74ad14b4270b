package cluster

import (
	"context"
	"time"

	"github.com/disgoorg/disgo/gateway"
)

// statusPollInterval is how often shard connection states are sampled.
// disgo waits at least a second before reconnecting, so no disconnect is
// shorter than four samples.
const statusPollInterval = 250 * time.Millisecond

// poller notices shards that lost their connection: disgo reports it in no
// event, only in the gateway's (mutex-guarded) status.
func (r *runner) poller(ctx context.Context) {
	defer r.recoverCallback("status poller")
	tick := time.NewTicker(statusPollInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		for _, id := range r.ids {
			g := r.sm.Shard(id)
			if g == nil || !r.track.isConnected(id) {
				continue
			}
			if st := g.Status(); st != gateway.StatusReady {
				r.track.disconnected(id, st == gateway.StatusResuming)
			}
		}
	}
}
