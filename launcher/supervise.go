package launcher

import (
	"context"
	"fmt"
	"log/slog"
	"runtime"
	"strconv"
	"sync"
	"time"

	"github.com/megane-go/megane/clusterhash"
	"github.com/megane-go/megane/control"
	"github.com/megane-go/megane/lifecycle"
	"github.com/megane-go/megane/shardmap"
)

// State is the supervision state of a child process (control.State, which
// the status replies carry).
type State = control.State

// States of a child, as Status and the Redis hash keyspace.Cluster report them.
const (
	StateStarting = control.StateStarting // spawned, not ready yet
	StateReady    = control.StateReady    // reported ready
	StateStopping = control.StateStopping // asked to exit (restart or shutdown)
	StateBackoff  = control.StateBackoff  // crashed; waiting before the respawn
	StateGaveUp   = control.StateGaveUp   // crashed too often; waits for RestartCluster
	StateStopped  = control.StateStopped  // the launcher stopped
	// StateWaitingRedis: exited while Redis was failing; respawned once
	// Redis works, without counting a crash.
	StateWaitingRedis = control.StateWaitingRedis
	// StateNotOwned: another launcher runs it (several launchers per bot).
	StateNotOwned = control.StateNotOwned
)

func defaultClusters() int { return runtime.NumCPU() }

type procKind int

const (
	kindCluster procKind = iota
	kindService
)

// exitReason says why a child's supervision ended.
type exitReason int

const (
	exitCrashed      exitReason = iota // exited by itself, or could not be spawned
	exitUnresponsive                   // killed: heartbeat expired or not ready in time
	exitRestart                        // stopped on request, to be respawned at once
	exitShutdown                       // stopped because the launcher stops
	exitLeaseLost                      // stopped or exited: the lease is no longer this launcher's
)

// restartReq is a RestartCluster call waiting for the new process to be ready.
type restartReq struct {
	done chan error // buffered: the supervisor never blocks on it
	// gate, when set, holds the respawn: a re-shard stops every old
	// cluster, moves the records, then lets them start on the new shards.
	gate *respawnGate
}

// proc supervises one child process (a cluster, or one copy of a service)
// across its respawns. Its run loop owns the child; other goroutines talk to
// it through restartCh and staleCh and read its state under mu.
type proc struct {
	l       *Launcher
	kind    procKind
	id      int   // cluster id
	shards  []int // cluster shards
	service string
	copy    int

	own       *ownership // whether this launcher may run it (leases)
	token     uint64     // the lease token of the current spawn
	exeOver   string     // spawn from this program instead (a rolled-back deploy); "" for the configured one
	restartCh chan *restartReq
	staleCh   chan uint64   // generation whose heartbeat expired
	done      chan struct{} // closed when run returns

	mu        sync.Mutex
	state     State
	gen       uint64 // spawn counter, so stale signals about an old child are ignored
	pid       int
	restarts  int
	startedAt time.Time
	readyAt   time.Time
	queued    int // identifies of the start this spawn belongs to (ready timeout)
	killNow   func()
}

func newProc(l *Launcher, kind procKind) *proc {
	return &proc{l: l, kind: kind, own: newOwnership(l.coop == nil),
		restartCh: make(chan *restartReq), staleCh: make(chan uint64, 1),
		done: make(chan struct{}), state: StateStarting}
}

func (p *proc) name() string {
	if p.kind == kindCluster {
		return "cluster " + strconv.Itoa(p.id)
	}
	return fmt.Sprintf("service %s#%d", p.service, p.copy)
}

func (p *proc) logAttrs() []any {
	if p.kind == kindCluster {
		return []any{slog.Int("cluster", p.id), slog.String("shards", shardmap.FormatRanges(p.shards))}
	}
	return []any{slog.String("service", p.service), slog.Int("copy", p.copy)}
}

func (p *proc) currentState() State {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.state
}

func (p *proc) setState(s State) {
	p.mu.Lock()
	p.state = s
	p.mu.Unlock()
	p.recordState()
}

// readyTimeout is how long the current spawn may take to become ready. A
// cluster's deadline grows with its own shards and with the identifies of
// its start that share its buckets, never with the bot's total shard count.
func (p *proc) readyTimeout() time.Duration {
	cfg := &p.l.cfg
	if p.kind == kindService {
		if t := cfg.Services[p.service].ReadyTimeout; t > 0 {
			return t
		}
		return DefaultServiceReadyTimeout
	}
	p.mu.Lock()
	queued := p.queued
	p.mu.Unlock()
	mc := max(p.l.maxConcurrency, 1)
	rounds := (queued + mc - 1) / mc
	return cfg.ReadyTimeout + time.Duration(len(p.shards))*cfg.ReadyTimeoutPerShard + time.Duration(rounds)*identifyInterval
}

// run keeps the child alive until ctx ends: spawn, watch, and on a crash
// respawn with exponential backoff, giving up after MaxRestarts crashes
// within RestartWindow. An exit while Redis was failing is not a crash:
// the child waits for Redis to work again and is respawned then.
func (p *proc) run(ctx context.Context) {
	defer close(p.done)
	cfg := &p.l.cfg
	backoff := cfg.RestartBackoff
	var crashes []time.Time
	var pending []*restartReq // answered when the next child is ready
	restarted := false
	for {
		if ctx.Err() != nil {
			p.fail(pending, ErrNotRunning)
			p.setState(StateStopped)
			return
		}
		token, ok := p.waitOwned(ctx, &pending)
		if !ok {
			p.setState(StateStopped)
			return
		}
		p.mu.Lock()
		p.token = token
		p.mu.Unlock()
		if g := gateOf(pending); g != nil && !g.hold(ctx) {
			continue // ctx ended: the check at the top answers pending
		}
		c, err := p.l.spawn(p)
		var reason exitReason
		detail := ""
		if err != nil {
			p.l.log.Error("cannot spawn "+p.name(), append(p.logAttrs(), slog.Any("error", err))...)
			reason, detail = exitCrashed, "spawn failed: "+err.Error()
		} else {
			var req *restartReq
			reason, req = p.watch(ctx, c, &pending, restarted, &backoff)
			if req != nil {
				pending = append(pending, req)
			}
			p.exited(c, reason)
			detail = c.describeExit()
		}

		restarted = true // every later spawn is a restart
		switch reason {
		case exitShutdown:
			p.fail(pending, ErrNotRunning)
			p.setState(StateStopped)
			return
		case exitRestart:
			p.bumpRestarts()
			continue
		case exitLeaseLost:
			p.fail(pending, fmt.Errorf("%w: %s lost its lease", ErrNotOwned, p.name()))
			pending = nil
			continue
		}
		if c != nil && c.exitCode() == ExitLeaseLost {
			// The child could not confirm its lease: the coop loop renews
			// or reclaims it (a new token), or it went to another launcher.
			p.l.log.Warn(p.name()+" stopped: it could not confirm its lease", p.logAttrs()...)
			p.own.set(false, 0)
			continue
		}

		p.fail(pending, fmt.Errorf("%w: %s %s", ErrRestartFailed, p.name(), detail))
		pending = nil
		if c != nil && p.exitedForRedis(ctx) {
			req, ok := p.waitForRedis(ctx, detail, backoff)
			if !ok {
				p.setState(StateStopped)
				return
			}
			if req != nil {
				pending = append(pending, req)
			}
			p.setQueued(len(p.shards))
			p.bumpRestarts()
			continue
		}
		now := time.Now()
		crashes = append(pruneBefore(crashes, now.Add(-cfg.RestartWindow)), now)
		if len(crashes) > cfg.MaxRestarts {
			req := p.giveUp(ctx, len(crashes), detail)
			if req == nil {
				p.setState(StateStopped)
				return
			}
			crashes, backoff = nil, cfg.RestartBackoff
			pending = append(pending, req)
			p.setQueued(len(p.shards))
			p.bumpRestarts()
			continue
		}

		p.setState(StateBackoff)
		p.l.log.Warn(p.name()+" will be respawned", append(p.logAttrs(),
			slog.String("exit", detail), slog.Duration("backoff", backoff),
			slog.Int("crashes_in_window", len(crashes)), slog.Int("max_restarts", cfg.MaxRestarts))...)
		timer := time.NewTimer(backoff)
		select {
		case <-timer.C:
		case req := <-p.restartCh:
			timer.Stop()
			pending = append(pending, req)
		case <-ctx.Done():
			timer.Stop()
			p.fail(pending, ErrNotRunning)
			p.setState(StateStopped)
			return
		}
		backoff = min(backoff*2, cfg.MaxRestartBackoff)
		// A crashed cluster's shards may have lost their sessions: budget
		// its ready timeout for identifying all of them.
		p.setQueued(len(p.shards))
		p.bumpRestarts()
	}
}

func (p *proc) bumpRestarts() {
	p.mu.Lock()
	p.restarts++
	p.mu.Unlock()
}

func (p *proc) setQueued(n int) {
	p.mu.Lock()
	p.queued = n
	p.mu.Unlock()
}

// watch supervises one child until it exits or is stopped.
func (p *proc) watch(ctx context.Context, c *child, pending *[]*restartReq, restarted bool, backoff *time.Duration) (exitReason, *restartReq) {
	p.mu.Lock()
	gen := p.gen
	p.mu.Unlock()
	timeout := p.readyTimeout()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	ready := c.ready
	_, _, ownChanged := p.own.get()
	for {
		select {
		case <-ownChanged:
			// Lost, or reclaimed with a new token the child does not hold:
			// either way this child must not keep the shards.
			p.l.log.Warn("stopping "+p.name()+": its lease is no longer this process's", append(p.logAttrs(), slog.Int("pid", c.pid))...)
			p.setState(StateStopping)
			c.stop(p.l.cfg.ShutdownTimeout, p.l.log)
			return exitLeaseLost, nil

		case <-ready:
			ready = nil
			deadline.Stop()
			p.mu.Lock()
			p.state, p.readyAt = StateReady, time.Now()
			took := p.readyAt.Sub(p.startedAt)
			p.mu.Unlock()
			p.recordState()
			*backoff = p.l.cfg.RestartBackoff
			p.l.log.Info(p.name()+" ready", append(p.logAttrs(), slog.Int("pid", c.pid), slog.Duration("took", took.Round(time.Millisecond)))...)
			p.event(evReady, "")
			if restarted {
				p.event(evRestarted, "")
			}
			p.fail(*pending, nil)
			*pending = nil
			if p.kind == kindCluster {
				p.l.clusterReady()
			}

		case <-deadline.C:
			if wait := p.redisGrace(timeout); wait > 0 {
				deadline.Reset(wait)
				continue
			}
			detail := fmt.Sprintf("not ready %s after spawn", timeout)
			p.l.log.Error(p.name()+" is unresponsive: killing it", append(p.logAttrs(), slog.Int("pid", c.pid), slog.String("reason", detail))...)
			p.event(evUnresponsive, detail)
			c.kill()
			<-c.exited
			return exitUnresponsive, nil

		case g := <-p.staleCh:
			if g != gen {
				continue
			}
			detail := "heartbeat expired"
			p.l.log.Error(p.name()+" is unresponsive: killing it", append(p.logAttrs(), slog.Int("pid", c.pid), slog.String("reason", detail))...)
			p.event(evUnresponsive, detail)
			c.kill()
			<-c.exited
			return exitUnresponsive, nil

		case req := <-p.restartCh:
			if p.kind == kindCluster && req.gate == nil {
				n, err := p.l.checkBudget(ctx, p.shards)
				if err != nil {
					req.done <- err
					continue
				}
				p.setQueued(n)
			}
			p.l.log.Info("restarting "+p.name()+" on request", append(p.logAttrs(), slog.Int("pid", c.pid))...)
			p.setState(StateStopping)
			c.stop(p.l.cfg.ShutdownTimeout, p.l.log)
			return exitRestart, req

		case <-c.exited:
			return exitCrashed, nil

		case <-ctx.Done():
			p.setState(StateStopping)
			c.stop(p.l.cfg.ShutdownTimeout, p.l.log)
			return exitShutdown, nil
		}
	}
}

// exited reports the end of a child.
func (p *proc) exited(c *child, reason exitReason) {
	p.mu.Lock()
	p.pid = 0
	p.killNow = nil
	p.mu.Unlock()
	detail := c.describeExit()
	switch reason {
	case exitRestart:
		detail = "restart requested; " + detail
	case exitShutdown:
		detail = "launcher stopping; " + detail
	}
	level := slog.LevelInfo
	if reason == exitCrashed {
		level = slog.LevelError
	}
	p.l.log.Log(context.Background(), level, p.name()+" exited", append(p.logAttrs(), slog.Int("pid", c.pid), slog.String("exit", detail))...)
	p.event(evExited, detail)
}

// giveUp reports the crash loop and parks until RestartCluster revives the
// process (returning its request) or ctx ends (returning nil).
func (p *proc) giveUp(ctx context.Context, crashes int, last string) *restartReq {
	cfg := &p.l.cfg
	p.setState(StateGaveUp)
	detail := fmt.Sprintf("gave up after %d crashes within %s (max restarts %d); last: %s",
		crashes, cfg.RestartWindow, cfg.MaxRestarts, last)
	p.l.log.Error(p.name()+" GAVE UP: it will not be respawned until restarted by hand", append(p.logAttrs(), slog.String("reason", detail))...)
	p.event(evGaveUp, detail)
	// Crashes while Redis fails do not count, but one may have tipped the
	// scale as Redis started failing: then retry once it works again.
	var redisBack <-chan struct{}
	if failing, _ := p.l.health.failing(); failing {
		redisBack = p.l.health.waitHealthy()
	}
	for {
		select {
		case req := <-p.restartCh:
			return req
		case <-redisBack:
			if !p.l.health.healthyFor(0) {
				redisBack = p.l.health.waitHealthy()
				continue
			}
			p.l.log.Warn(p.name()+" gave up while Redis was failing: retrying now that Redis works", p.logAttrs()...)
			return &restartReq{done: make(chan error, 1)}
		case <-ctx.Done():
			return nil
		}
	}
}

// exitedForRedis judges a child that exited by itself: it exited because
// of Redis when Redis fails now (the launcher probes it at once, as the
// child may have noticed first) or failed within the last heartbeat TTL.
// Such an exit (ExitRedisUnavailable, or any other status a Redis error
// led to) says nothing about the child's health.
func (p *proc) exitedForRedis(ctx context.Context) bool {
	h := p.l.health
	pctx, cancel := context.WithTimeout(ctx, p.l.cfg.HeartbeatInterval)
	defer cancel()
	if err := h.check(pctx); err != nil && ctx.Err() == nil {
		return true
	}
	failed, _ := h.failedSince(h.p.now().Add(-p.l.heartbeatTTL()))
	return failed
}

// waitForRedis parks a child that exited during a Redis outage until Redis
// works (then, after backoff, it is respawned) or a restart is requested.
// It reports false when ctx ended.
func (p *proc) waitForRedis(ctx context.Context, detail string, backoff time.Duration) (*restartReq, bool) {
	p.setState(StateWaitingRedis)
	p.l.log.Warn(p.name()+" exited while Redis was failing: it will be respawned once Redis works (not counted as a crash)",
		append(p.logAttrs(), slog.String("exit", detail))...)
	select {
	case <-p.l.health.waitHealthy():
	case req := <-p.restartCh:
		return req, true
	case <-ctx.Done():
		return nil, false
	}
	// Redis may flap: a short pause keeps a respawn loop slow.
	t := time.NewTimer(backoff)
	defer t.Stop()
	select {
	case <-t.C:
		return nil, true
	case req := <-p.restartCh:
		return req, true
	case <-ctx.Done():
		return nil, false
	}
}

// redisGrace is how much longer the current spawn may take to become ready
// because Redis failed since it was spawned: its whole ready timeout again,
// counted from when Redis recovered (or one heartbeat interval at a time
// while Redis still fails). Zero when Redis did not fail meanwhile.
func (p *proc) redisGrace(timeout time.Duration) time.Duration {
	p.mu.Lock()
	started := p.startedAt
	p.mu.Unlock()
	failed, healthySince := p.l.health.failedSince(started)
	if !failed {
		return 0
	}
	if healthySince.IsZero() {
		return p.l.cfg.HeartbeatInterval
	}
	return time.Until(healthySince.Add(timeout))
}

func (p *proc) fail(reqs []*restartReq, err error) {
	for _, r := range reqs {
		r.done <- err
	}
}

// restart asks the run loop to restart the child and waits for the new one.
func (p *proc) restart(ctx context.Context) error {
	return p.restartGated(ctx, nil)
}

// restartGated is restart with the respawn held at gate (nil: none).
func (p *proc) restartGated(ctx context.Context, gate *respawnGate) error {
	req := &restartReq{done: make(chan error, 1), gate: gate}
	select {
	case p.restartCh <- req:
	case <-p.done:
		return ErrNotRunning
	case <-ctx.Done():
		return ctx.Err()
	}
	// The run loop answers every request it took, also when it stops.
	select {
	case err := <-req.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *proc) forceKill() {
	p.mu.Lock()
	k := p.killNow
	p.mu.Unlock()
	if k != nil {
		k()
	}
}

func pruneBefore(ts []time.Time, cutoff time.Time) []time.Time {
	out := ts[:0]
	for _, t := range ts {
		if t.After(cutoff) {
			out = append(out, t)
		}
	}
	return out
}

// recordState mirrors the supervision state into the cluster's hash. The
// running cluster maintains status, pid and its times itself; the launcher
// adds "supervisor" and "restarts", and owns status and pid while no process
// runs, when the hash would otherwise keep saying "ready" about a dead one.
func (p *proc) recordState() {
	if p.kind != kindCluster {
		return
	}
	if owned, _, _ := p.own.get(); !owned {
		return // the hash is the owner's
	}
	p.mu.Lock()
	sup := clusterhash.Supervision{State: string(p.state), Restarts: p.restarts, Running: p.pid != 0}
	p.mu.Unlock()
	rdb, ks, id := p.l.rdb, p.l.ks, p.id
	p.l.sink.do(func(ctx context.Context) error { return clusterhash.SetSupervision(ctx, rdb, ks, id, sup).Err() })
}

type evKind int

const (
	evSpawned evKind = iota
	evReady
	evExited
	evRestarted
	evUnresponsive
	evGaveUp
)

// event publishes a lifecycle event about this child. Services have no
// restarted/unresponsive/gave-up types: their exit event carries the detail.
func (p *proc) event(k evKind, detail string) {
	if p.kind == kindCluster {
		t := [...]lifecycle.Type{lifecycle.ClusterSpawned, lifecycle.ClusterReady, lifecycle.ClusterExited,
			lifecycle.ClusterRestarted, lifecycle.ClusterUnresponsive, lifecycle.ClusterGaveUp}[k]
		ev := lifecycle.ClusterEvent(t, p.id, detail)
		if k == evReady {
			// cluster.Run publishes its own ClusterReady to Redis.
			ev.At = time.Now()
			p.l.sink.deliver(ev)
			return
		}
		p.l.sink.event(ev)
		return
	}
	var t lifecycle.Type
	switch k {
	case evSpawned:
		t = lifecycle.ServiceSpawned
	case evReady:
		t = lifecycle.ServiceReady
	case evExited, evGaveUp:
		t = lifecycle.ServiceExited
	default:
		return
	}
	p.l.sink.event(lifecycle.ServiceEvent(t, p.service, serviceDetail(p.copy, detail)))
}

// serviceDetail is a service event's detail: the copy it is about (copy 0
// too, so every service event names its copy), then what the event says,
// if anything.
func serviceDetail(copyN int, detail string) string {
	if detail == "" {
		return "copy " + strconv.Itoa(copyN)
	}
	return "copy " + strconv.Itoa(copyN) + "; " + detail
}
