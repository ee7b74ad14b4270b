package launcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// errEmptied is returned by a probe that found Redis working but without
// the data it had: it was flushed, or restarted without persistence. The
// probe's own write went through, so Redis is healthy from now on, but
// every child's keys are gone until the child writes them again.
var errEmptied = errors.New("launcher: Redis lost the bot's keys (FLUSHDB, or a restart without persistence)")

// healthParams builds a redisHealth.
type healthParams struct {
	// probe writes to Redis (the launcher's own hash) and reports whether
	// the write went through, or errEmptied when it went through but the
	// record it rewrote had vanished. A write, not a PING: a Redis out of memory
	// under noeviction answers reads and PINGs but refuses every write,
	// and children's heartbeats are writes.
	probe func(ctx context.Context) error
	// afterProbe runs after every successful probe (the launcher rewrites
	// the records it owns that went missing). Optional.
	afterProbe func(ctx context.Context)
	// interval is how often the probe runs, and its timeout.
	interval time.Duration
	// now is the clock; time.Now when nil.
	now    func() time.Time
	logger *slog.Logger
}

// redisHealth tells "Redis is failing" apart from "a child is silent". It
// writes to Redis every interval and remembers since when the writes have
// gone through without a break. The watchdog judges children by their
// heartbeat keys only once Redis has been healthy for longer than those
// keys' TTL: before that, a missing key may be a write Redis refused or a
// key an empty restarted Redis never had.
//
// Redis counts as healthy when the launcher starts: start wrote its keys.
type redisHealth struct {
	p healthParams

	mu           sync.Mutex
	healthySince time.Time     // zero while failing
	failingSince time.Time     // zero while healthy
	lastFailure  time.Time     // the last failed probe, zero if none
	lastErr      error         // the last failed probe's error
	recovered    chan struct{} // closed, and replaced, when Redis works again after failing

	stop chan struct{}
	done chan struct{}
}

func newRedisHealth(p healthParams) *redisHealth {
	if p.now == nil {
		p.now = time.Now
	}
	if p.logger == nil {
		p.logger = slog.New(slog.DiscardHandler)
	}
	return &redisHealth{p: p, healthySince: p.now(), recovered: make(chan struct{}),
		stop: make(chan struct{}), done: make(chan struct{})}
}

// start runs the probe every interval until shutdown.
func (h *redisHealth) start(wg *sync.WaitGroup) {
	wg.Go(func() {
		defer close(h.done)
		t := time.NewTicker(h.p.interval)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
			ctx, cancel := context.WithTimeout(context.Background(), h.p.interval)
			if h.check(ctx) == nil && h.p.afterProbe != nil {
				h.p.afterProbe(ctx)
			}
			cancel()
		}
	})
}

// shutdown stops the probe loop and waits for it.
func (h *redisHealth) shutdown() {
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	<-h.done
}

// check probes Redis once and records the result. A probe cut short by
// the caller's context ending (the launcher stopping) records nothing.
func (h *redisHealth) check(ctx context.Context) error {
	start := h.p.now()
	err := h.p.probe(ctx)
	if err != nil && errors.Is(err, context.Canceled) {
		return err
	}
	if err == nil {
		err = h.tooSlow(start, "the launcher's probe write")
	}
	if errors.Is(err, errEmptied) {
		h.emptied()
		return nil
	}
	h.record(err)
	return err
}

// tooSlow returns an error when a Redis round trip that started at start
// took longer than the probe interval. A Redis that is paused (SIGSTOP, a
// long fork, a stalled network) answers late rather than with an error
// (go-redis waits out its read timeout, not the context's deadline), and
// a child's heartbeat blocked the same way meanwhile: that is an outage,
// not a silent child.
func (h *redisHealth) tooSlow(start time.Time, what string) error {
	if took := h.p.now().Sub(start); took > h.p.interval {
		return fmt.Errorf("launcher: Redis took %s to answer %s (more than the %s heartbeat interval)",
			took.Round(time.Millisecond), what, h.p.interval)
	}
	return nil
}

// slowRoundTrip records an outage when a Redis round trip of the watchdog,
// started at start, took longer than the probe interval, and reports
// whether it did: what the round trip read is then stale.
func (h *redisHealth) slowRoundTrip(start time.Time, what string) bool {
	err := h.tooSlow(start, what)
	if err != nil {
		h.record(err)
	}
	return err != nil
}

// emptied records that Redis lost its data: a failure that is over at
// once, so the watchdog again waits a heartbeat TTL for the children to
// rewrite their keys.
func (h *redisHealth) emptied() {
	now := h.p.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	h.p.logger.Warn("Redis lost the bot's keys (FLUSHDB, or a restart without persistence): " +
		"every process rewrites what it owns; no child is judged by its heartbeat until they had the time")
	h.lastFailure, h.lastErr = now, errEmptied
	if h.healthySince.IsZero() {
		close(h.recovered)
		h.recovered = make(chan struct{})
	}
	h.healthySince, h.failingSince = now, time.Time{}
}

// record updates the state with one probe's result and logs transitions.
func (h *redisHealth) record(err error) {
	now := h.p.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	if err != nil {
		h.lastFailure, h.lastErr = now, err
		if h.failingSince.IsZero() {
			h.failingSince, h.healthySince = now, time.Time{}
			h.p.logger.Warn("Redis is failing: no child is judged by its heartbeat, and none that exits "+
				"meanwhile counts as crashed, until Redis works again", slog.Any("error", err))
		}
		return
	}
	if h.healthySince.IsZero() {
		h.p.logger.Info("Redis works again", slog.Duration("failed_for", now.Sub(h.failingSince).Round(time.Millisecond)))
		h.healthySince, h.failingSince = now, time.Time{}
		close(h.recovered)
		h.recovered = make(chan struct{})
	}
}

// healthyFor reports whether Redis has been healthy without a break for at
// least d.
func (h *redisHealth) healthyFor(d time.Duration) bool {
	now := h.p.now()
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.healthySince.IsZero() && now.Sub(h.healthySince) >= d
}

// since is when Redis became healthy; zero while it fails.
func (h *redisHealth) since() time.Time {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.healthySince
}

// failedSince reports whether a probe failed at or after t, and since when
// Redis has been healthy again (zero while it still fails).
func (h *redisHealth) failedSince(t time.Time) (failed bool, healthySince time.Time) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return !h.lastFailure.IsZero() && !h.lastFailure.Before(t), h.healthySince
}

// waitHealthy returns a channel that is closed once Redis is healthy: at
// once when it is now, else at the next recovery.
func (h *redisHealth) waitHealthy() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !h.healthySince.IsZero() {
		ch := make(chan struct{})
		close(ch)
		return ch
	}
	return h.recovered
}

// failing reports whether the last probe failed, and its error.
func (h *redisHealth) failing() (bool, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.healthySince.IsZero(), h.lastErr
}
