package launcher

import (
	"context"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
)

// watchHeartbeats kills clusters that stopped heartbeating. Each cluster
// refreshes keyspace.ClusterHeartbeat with a TTL of three intervals; the
// watchdog checks all keys in one pipeline per interval and reports a
// cluster whose key is missing on two checks in a row, so that a Redis
// restart (every key gone at once, rewritten within an interval) kills
// nothing. A cluster must heartbeat once it is ready, or once startGrace
// has passed since its spawn; before that its ready timeout covers it.
func (l *Launcher) watchHeartbeats(ctx context.Context) {
	interval := l.cfg.HeartbeatInterval
	startGrace := 3*interval + 5*time.Second
	t := time.NewTicker(interval)
	defer t.Stop()
	type key struct {
		id  int
		gen uint64
	}
	misses := map[key]int{}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		var watched []*proc
		var gens []uint64
		for _, p := range l.clusters {
			p.mu.Lock()
			due := (p.state == StateReady) || (p.state == StateStarting && now.Sub(p.startedAt) > startGrace)
			gen := p.gen
			p.mu.Unlock()
			if due {
				watched = append(watched, p)
				gens = append(gens, gen)
			}
		}
		if len(watched) == 0 {
			continue
		}
		cmds := make([]*redis.IntCmd, len(watched))
		_, err := l.rdb.Pipelined(ctx, func(pipe redis.Pipeliner) error {
			for i, p := range watched {
				cmds[i] = pipe.Exists(ctx, l.ks.ClusterHeartbeat(p.id))
			}
			return nil
		})
		if err != nil {
			// Without Redis nobody can tell a hung cluster from a
			// partitioned launcher: kill nothing.
			if ctx.Err() == nil {
				l.log.Warn("heartbeat check failed", slog.Any("error", err))
			}
			continue
		}
		seen := map[key]int{}
		for i, p := range watched {
			k := key{p.id, gens[i]}
			if cmds[i].Val() > 0 {
				continue
			}
			seen[k] = misses[k] + 1
			if seen[k] >= 2 {
				select {
				case p.staleCh <- gens[i]:
				default:
				}
				delete(seen, k)
			}
		}
		misses = seen
	}
}
