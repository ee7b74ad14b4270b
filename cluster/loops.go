package cluster

import (
	"context"
	"log/slog"
	"time"

	"github.com/disgoorg/disgo/gateway"

	"github.com/megane-go/megane/lifecycle"
	"github.com/megane-go/megane/sessions"
)

// statusPollInterval is how often shard connection states are sampled.
// disgo waits at least a second before reconnecting, so no disconnect is
// shorter than four samples.
const statusPollInterval = 250 * time.Millisecond

// projectionFlushTimeout bounds the wait for the cache projection before a
// session write. A projection that cannot keep up (a burst of
// GUILD_CREATEs, Redis down) holds the saved sequences back, so a crash
// replays rather than loses its events.
const projectionFlushTimeout = 2 * time.Second

// projectionBehindWarn is how long sessions may wait for the projection
// before the cluster warns (and how often it repeats the warning).
const projectionBehindWarn = 30 * time.Second

// startLoops starts the writer (sessions, statuses, events), the status
// poller, the healer and the heartbeat. They run on ctx, which Run's cancellation does
// not reach: stop ends them itself once the final state is written.
func (r *runner) startLoops(ctx context.Context) *loops {
	l := &loops{}
	workCtx, cancelWork := context.WithCancel(ctx)
	beatCtx, cancelBeat := context.WithCancel(ctx)
	l.workCtx, l.cancelWork, l.cancelBeat = workCtx, cancelWork, cancelBeat
	l.work.Go(func() { r.writer(workCtx) })
	l.work.Go(func() { r.poller(workCtx) })
	l.work.Go(func() { r.heal(workCtx) })
	l.beat.Go(func() { r.heartbeat(beatCtx) })
	return l
}

// writer flushes changed sessions every SessionSyncInterval, and at once
// when a shard gets a new session or changes status.
func (r *runner) writer(ctx context.Context) {
	defer r.recoverCallback("session writer")
	tick := time.NewTicker(r.o.SessionSyncInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-r.track.wake:
		}
		if err := r.flush(ctx, false); err != nil && ctx.Err() == nil {
			r.log.Warn("cluster: session write failed; retrying", slog.Any("error", err))
		}
	}
}

// flush writes, in one pipeline, every session that moved, every status
// that changed and every queued lifecycle event. final also saves
// sequences received but not yet confirmed, which is only right once no
// listener is running.
func (r *runner) flush(ctx context.Context, final bool) error {
	b := r.track.take(final)
	if b.empty() {
		return nil
	}
	var behind error
	if len(b.sessions) > 0 {
		// Every event up to the sequences in b was queued for the
		// projection before it counted as handled. While the projection is
		// behind, the sessions wait (a crash then replays into it rather
		// than skips it); statuses and events go out regardless.
		if behind = r.sh.flushProjection(ctx, projectionFlushTimeout); behind != nil {
			b.sessions, b.versions = nil, nil
			r.noteBehind(behind)
		} else {
			r.behindSince = time.Time{}
		}
	}
	if len(b.statuses) == 0 && len(b.events) == 0 && len(b.sessions) == 0 {
		if final {
			return behind
		}
		return nil
	}
	now := time.Now().UnixMilli()
	pipe := r.rdb.Pipeline()
	for id, s := range b.sessions {
		sessions.SavePipe(ctx, pipe, r.ks, id, s)
	}
	for id, st := range b.statuses {
		// guilds is the heartbeat's to write, from guildCounts.
		pipe.HSet(ctx, r.ks.ShardStatus(id), "status", st.status, "cluster", r.o.ID, "updated_at", now)
	}
	for _, ev := range b.events {
		lifecycle.PublishPipe(ctx, pipe, r.ks, ev)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		r.track.failed(b)
		return err
	}
	r.track.done(b)
	if final {
		// finish retries: the last save must not point past the projection.
		return behind
	}
	return nil
}

// noteBehind records that sessions were held back for the projection, and
// warns once it has been behind for long.
func (r *runner) noteBehind(err error) {
	now := time.Now()
	if r.behindSince.IsZero() {
		r.behindSince = now
	}
	if d := now.Sub(r.behindSince); d > projectionBehindWarn && now.Sub(r.behindWarned) > projectionBehindWarn {
		r.behindWarned = now
		r.log.Warn("cluster: the cache projection is behind; sessions are saved once it caught up",
			slog.Duration("behind_for", d.Round(time.Second)), slog.Any("error", err))
	}
}

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
			now := time.Now().UnixMilli()
			pipe := r.rdb.Pipeline()
			pipe.Set(ctx, r.ks.ClusterHeartbeat(r.o.ID), now, 3*interval)
			for id, ms := range r.track.latencies() {
				fields := []any{"latency_ms", ms, "updated_at", now}
				if n, ok := guilds[id]; ok && n >= 0 {
					fields = append(fields, "guilds", n)
				}
				pipe.HSet(ctx, r.ks.ShardStatus(id), fields...)
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
