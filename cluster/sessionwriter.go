package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/megane-go/megane/lifecycle"
	"github.com/megane-go/megane/sessions"
	"github.com/megane-go/megane/shardstatus"
)

// projectionFlushTimeout bounds the wait for the cache projection before a
// session write. A projection that cannot keep up (a burst of
// GUILD_CREATEs, Redis down) holds the saved sequences back, so a crash
// replays rather than loses its events.
const projectionFlushTimeout = 2 * time.Second

// projectionBehindWarn is how long sessions may wait for the projection
// before the cluster warns (and how often it repeats the warning).
const projectionBehindWarn = 30 * time.Second

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
	now := time.Now()
	pipe := r.rdb.Pipeline()
	for id, s := range b.sessions {
		s.Fence = r.o.Fence
		sessions.SavePipe(ctx, pipe, r.ks, id, s)
	}
	for id, st := range b.statuses {
		// guilds is the heartbeat's to write, from guildCounts.
		shardstatus.SetState(ctx, pipe, r.ks, id, r.o.ID, st.status, now)
	}
	for _, ev := range b.events {
		lifecycle.PublishPipe(ctx, pipe, r.ks, ev)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		r.track.failed(b)
		if sessions.IsFenced(err) {
			r.fenced.Store(true)
			r.fail(fmt.Errorf("%w: %w", sessions.ErrFenced, err))
		}
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
