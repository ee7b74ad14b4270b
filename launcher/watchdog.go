package launcher

import (
	"context"
	"log/slog"
	"os"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/redisipc"
)

// watchHeartbeats kills children that stopped heartbeating. Each cluster
// refreshes keyspace.ClusterHeartbeat with a TTL of three intervals (a
// service copy its IPC registration); the watchdog checks all keys in one
// pipeline per interval and reports a child whose key is missing on two
// checks in a row. A child must heartbeat once it is ready, or once
// startGrace has passed since its spawn; before that its ready timeout
// covers it.
//
// Redis is the bus, not the judge: a missing key counts only while Redis
// has been healthy (the launcher's own writes going through, see
// redisHealth) for longer than the keys' TTL. During an outage and for one
// TTL after it, a key may be missing because Redis refused the child's
// write or lost every key (FLUSHDB, a restart without persistence), so
// every miss counted so far is forgotten and nobody is killed.
func (l *Launcher) watchHeartbeats(ctx context.Context) {
	interval := l.cfg.HeartbeatInterval
	startGrace := 3*interval + 5*time.Second
	t := time.NewTicker(interval)
	defer t.Stop()
	w := &watchdog{misses: map[*proc]missCount{}}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		l.watchRound(ctx, time.Now(), startGrace, w)
	}
}

// watchdog is what the watchdog remembers between rounds.
type watchdog struct {
	misses map[*proc]missCount
	// healthySince is when Redis became healthy for the misses counted; a
	// failure in between (even one no round saw) forgets them.
	healthySince time.Time
}

// heartbeatTTL is the TTL of the children's heartbeat keys.
func (l *Launcher) heartbeatTTL() time.Duration { return 3 * l.cfg.HeartbeatInterval }

// watchRound is one check of every child.
func (l *Launcher) watchRound(ctx context.Context, now time.Time, startGrace time.Duration, w *watchdog) {
	if !l.health.healthyFor(l.heartbeatTTL()) {
		clear(w.misses)
		return
	}
	if since := l.health.since(); !since.Equal(w.healthySince) {
		clear(w.misses)
		w.healthySince = since
	}
	l.checkClusters(ctx, now, startGrace, w.misses)
	l.checkServices(ctx, now, startGrace, w.misses)
}

// checkClusters is the clusters' half of the watchdog.
func (l *Launcher) checkClusters(ctx context.Context, now time.Time, startGrace time.Duration, misses map[*proc]missCount) {
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
		return
	}
	cmds := make([]*redis.IntCmd, len(watched))
	start := l.health.p.now()
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
		return
	}
	if l.health.slowRoundTrip(start, "the heartbeat check") {
		return
	}
	for i, p := range watched {
		if cmds[i].Val() > 0 {
			delete(misses, p)
			continue
		}
		missed(p, gens[i], misses)
	}
}

// missed counts one missed check of generation gen of p, and reports the
// child stale on the second in a row.
func missed(p *proc, gen uint64, misses map[*proc]missCount) {
	m := misses[p]
	if m.gen != gen {
		m = missCount{gen: gen}
	}
	m.misses++
	misses[p] = m
	if m.misses >= 2 {
		select {
		case p.staleCh <- gen:
		default:
		}
		delete(misses, p)
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
// to the clusters' heartbeat TTL). A ready copy whose pid has no live
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
	start := l.health.p.now()
	nodes, err := redisipc.LiveNodes(ctx, l.rdb, l.ks)
	if err != nil {
		if ctx.Err() == nil {
			l.log.Warn("service liveness check failed", slog.Any("error", err))
		}
		return
	}
	if l.health.slowRoundTrip(start, "the service liveness check") {
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
		missed(p, gens[i], misses)
	}
}
