package launcher

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/redisipc"
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
	serviceMisses := map[*proc]missCount{}
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
		l.checkServices(ctx, now, startGrace, serviceMisses)
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

// missCount counts consecutive checks that missed one process generation.
type missCount struct {
	gen    uint64
	misses int
}

// checkServices is the services' half of the watchdog. A service copy has
// no heartbeat key of its own: its liveness is its IPC registration
// (redisipc refreshes it every third of its TTL, which the launcher sets
// to three heartbeat intervals). A ready copy whose pid has no live
// registration on two checks in a row is frozen and gets replaced; its
// pending requests are reclaimed by the other copies meanwhile.
func (l *Launcher) checkServices(ctx context.Context, now time.Time, startGrace time.Duration, misses map[*proc]missCount) {
	var watched []*proc
	var gens []uint64
	for _, p := range l.services {
		p.mu.Lock()
		due := p.state == StateReady || (p.state == StateStarting && now.Sub(p.startedAt) > startGrace)
		gen, pid := p.gen, p.pid
		p.mu.Unlock()
		if due && pid > 0 {
			watched = append(watched, p)
			gens = append(gens, gen)
		}
	}
	if len(watched) == 0 {
		return
	}
	nodes, err := redisipc.LiveNodes(ctx, l.rdb, l.ks)
	if err != nil {
		if ctx.Err() == nil {
			l.log.Warn("service liveness check failed", slog.Any("error", err))
		}
		return
	}
	host, _ := os.Hostname()
	live := map[int]bool{}
	for _, n := range nodes {
		if n.Host == host {
			live[n.PID] = true
		}
	}
	for i, p := range watched {
		p.mu.Lock()
		pid := p.pid
		p.mu.Unlock()
		if live[pid] {
			delete(misses, p)
			continue
		}
		m := misses[p]
		if m.gen != gens[i] {
			m = missCount{gen: gens[i]}
		}
		m.misses++
		misses[p] = m
		if m.misses >= 2 {
			select {
			case p.staleCh <- gens[i]:
			default:
			}
			delete(misses, p)
		}
	}
}
