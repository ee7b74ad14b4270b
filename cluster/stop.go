package cluster

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/gorilla/websocket"

	"github.com/megane-go/megane/clusterhash"
	"github.com/megane-go/megane/sessions"
)

// stop closes the cluster resumably: no shard is closed with 1000, and each
// shard's last handled sequence is saved before Run returns.
func (r *runner) stop(ctx context.Context, w Worker, bg *loops, reason error) error {
	start := time.Now()
	deadline := start.Add(r.o.StopTimeout)
	r.log.Info("cluster stopping resumably")
	r.reopen.shutdown()
	r.track.stop()
	if err := clusterhash.SetStatus(context.WithoutCancel(ctx), r.rdb, r.ks, r.o.ID, clusterhash.StatusStopping).Err(); err != nil {
		r.log.Warn("cluster: could not record stopping", slog.Any("error", err))
	}
	// Shards still opening. One that IDENTIFYs has no session to lose, so
	// cancel it now; one that RESUMEs gets until the deadline to finish, so
	// it can be closed resumably below.
	for _, op := range r.opens {
		if !op.resuming {
			op.cancel()
		}
	}
	if r.limiter != nil {
		// A resume that failed falls back to IDENTIFY; it must not take a
		// bucket now either.
		r.limiter.Close(ctx)
	}
	for id, op := range r.opens {
		if !waitClosed(op.done, time.Until(deadline)) {
			r.log.Warn("cluster: shard still resuming at the stop deadline; its session may be lost",
				slog.Int("shard_id", id))
			op.cancel()
		}
	}
	for _, op := range r.opens {
		// A cancelled open returns after disgo's own 5 s close timeout at most.
		waitClosed(op.done, 6*time.Second)
	}

	// 1012 (service restart) keeps the session resumable; Close would send
	// 1000, which ends it.
	var wg sync.WaitGroup
	for _, id := range r.ids {
		g := r.sm.Shard(id)
		if g == nil {
			continue
		}
		wg.Go(func() {
			cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			g.CloseWithCode(cctx, websocket.CloseServiceRestart, "cluster stopping")
		})
	}
	wg.Wait()

	// Listeners still running finish their event before its sequence counts.
	tick := time.NewTicker(5 * time.Millisecond)
	for r.track.inFlight() && time.Now().Before(deadline) {
		<-tick.C
	}
	tick.Stop()
	if r.track.inFlight() {
		r.log.Warn("cluster: event handlers still running at the stop deadline; their events will be replayed")
	}

	status := "stopped"
	if reason != nil {
		status = "failed"
	}
	r.finish(ctx, bg, status)
	// No event arrives any more: write what the projection still holds
	// and stop its writer.
	r.sh.closeProjector(ctx, r.o.StopTimeout, r.log)

	if s, ok := w.(Shutdowner); ok {
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.o.StopTimeout)
		err := r.shutdown(sctx, s)
		cancel()
		if err != nil {
			r.log.Error("cluster: Shutdown failed", slog.Any("error", err))
			if reason == nil {
				reason = err
			}
		}
	}
	// Last, so Shutdown can still call other processes.
	r.sh.close(ctx, r.o.StopTimeout, r.log)
	r.log.Info("cluster stopped", slog.Duration("took", time.Since(start)))
	return reason
}

// finish stops the background loops, writes the final sessions, statuses
// and events, and removes the heartbeat.
func (r *runner) finish(ctx context.Context, bg *loops, status string) {
	r.reopen.shutdown()
	r.track.stop()
	bg.stopWork()
	fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), r.o.StopTimeout)
	defer cancel()
	var err error
	for attempt := range 3 {
		if err = r.flush(fctx, true); err == nil || r.fenced.Load() {
			break
		}
		r.log.Warn("cluster: final save failed", slog.Int("attempt", attempt+1), slog.Any("error", err))
		select {
		case <-fctx.Done():
		case <-time.After(200 * time.Millisecond):
		}
	}
	bg.stopBeat()
	if r.superseded(fctx) {
		r.log.Warn("cluster: another process owns these shards now; leaving its records alone")
		return
	}
	pipe := r.rdb.Pipeline()
	clusterhash.SetStopped(fctx, pipe, r.ks, r.o.ID, status, time.Now())
	pipe.Del(fctx, r.ks.ClusterHeartbeat(r.o.ID))
	if _, err := pipe.Exec(fctx); err != nil {
		r.log.Warn("cluster: could not record the stop", slog.Any("error", err))
	}
}

func (r *runner) shutdown(ctx context.Context, s Shutdowner) (err error) {
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("cluster: Shutdown panicked: %v", p)
		}
	}()
	return s.Shutdown(ctx)
}

func waitClosed(ch <-chan struct{}, d time.Duration) bool {
	if d <= 0 {
		select {
		case <-ch:
			return true
		default:
			return false
		}
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ch:
		return true
	case <-t.C:
		return false
	}
}

// superseded reports whether a process with a newer fencing token took
// this cluster's shards over: then the cluster hash and the heartbeat are
// the new owner's, and a stopping stale owner must not mark them stopped.
func (r *runner) superseded(ctx context.Context) bool {
	if r.o.Fence == 0 {
		return false
	}
	if r.fenced.Load() {
		return true
	}
	if len(r.ids) == 0 {
		return false
	}
	states, err := sessions.Fences(ctx, r.rdb, r.ks, r.ids[:1])
	return err == nil && states[r.ids[0]] > r.o.Fence
}
