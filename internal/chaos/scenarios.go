package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/megane-go/megane/discordtest"
	"github.com/megane-go/megane/lifecycle"
	"github.com/megane-go/megane/redisipc"
	"github.com/megane-go/megane/services"
)

func scenarios() []scenario {
	return []scenario{
		{"cold-starts", "start and stop a 3-cluster bot N times: no crash", coldStarts},
		{"kill-storm", "SIGKILL a random cluster every few seconds under numbered messages", killStorm},
		{"redis-outages", "Redis paused, restarted with and without persistence, out of memory, flushed", redisOutages},
		{"service-kill", "SIGKILL a service copy under 64 in-flight calls", serviceKill},
		{"eval-bombs", "expressions that allocate or compute without bound, at every role", evalBombs},
		{"gateway-faults", "RECONNECT storm, INVALID_SESSION, a half-open socket, close 4004", gatewayFaults},
	}
}

func fig(name string, ok bool, target, format string, args ...any) figure {
	return figure{Name: name, Value: fmt.Sprintf(format, args...), Target: target, OK: ok}
}

// sleepCtx waits d or until ctx ends.
func sleepCtx(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func percentile(ds []time.Duration, p float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[min(len(s)-1, int(float64(len(s))*p))]
}

func coldStarts(ctx context.Context, e *env) ([]figure, error) {
	var ready []time.Duration
	crashes, violations, started, unclean := 0, 0, 0, 0
	var firstErr error
	for i := 0; i < e.p.coldStarts && ctx.Err() == nil; i++ {
		f, err := e.newFleet(ctx, fleetOptions{slowCopies: 1})
		if err != nil {
			crashes++
			firstErr = cmpErr(firstErr, err)
			continue
		}
		started++
		ready = append(ready, f.ready)
		evs := events(ctx, f.rdb, f.ks)
		crashes += countEvents(evs, lifecycle.ClusterExited, lifecycle.ClusterUnresponsive,
			lifecycle.ClusterGaveUp, lifecycle.ServiceExited)
		violations += len(f.srv.Violations())
		if err := f.close(); err != nil {
			unclean++
			firstErr = cmpErr(firstErr, fmt.Errorf("stop: %w", err))
		}
	}
	return []figure{
		fig("starts", started == e.p.coldStarts, strconv.Itoa(e.p.coldStarts), "%d", started),
		fig("crashes", crashes == 0, "0", "%d", crashes),
		fig("unclean stops", unclean == 0, "0", "%d", unclean),
		fig("identify violations", violations == 0, "0", "%d", violations),
		fig("all ready after (p50 / max)", true, "-", "%s / %s",
			percentile(ready, 0.5).Round(10*time.Millisecond), percentile(ready, 1).Round(10*time.Millisecond)),
	}, firstErr
}

func cmpErr(first, err error) error {
	if first != nil {
		return first
	}
	return err
}

type kill struct {
	at  time.Time
	who string
	pid int
}

func killStorm(ctx context.Context, e *env) ([]figure, error) {
	f, err := e.newFleet(ctx, fleetOptions{})
	if err != nil {
		return nil, err
	}
	defer f.close()
	identBase := f.srv.Stats().Identifies
	resumesBase := okResumes(f)

	tr, stopTraffic := startTraffic(ctx, f.srv, e.p.messageInterval)
	defer stopTraffic()

	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	var kills []kill
	killed := map[int]bool{}
	end := time.Now().Add(e.p.killStorm)
	for time.Now().Before(end) {
		if err := sleepCtx(ctx, e.p.killEvery); err != nil {
			return nil, err
		}
		var clusters []child
		for _, c := range f.bot.children() {
			if c.role == "cluster" && !killed[c.pid] {
				clusters = append(clusters, c)
			}
		}
		if len(clusters) == 0 {
			continue
		}
		c := clusters[rng.IntN(len(clusters))]
		if err := syscall.Kill(c.pid, syscall.SIGKILL); err == nil {
			kills = append(kills, kill{time.Now(), c.String(), c.pid})
			killed[c.pid] = true
		}
	}
	// Every cluster runs again, in a process that was never killed, and
	// every shard is back.
	err = waitFor(ctx, "every killed cluster respawned and its shards back", 60*time.Second, func() bool {
		n := 0
		for _, c := range f.bot.children() {
			if c.role == "cluster" && !killed[c.pid] {
				n++
			}
		}
		return n == f.opts.clusters && f.srv.ShardsReady(f.opts.shards)
	})
	stopTraffic()
	res, err2 := tr.waitAnswered(ctx, 30*time.Second)
	err = errors.Join(err, err2)

	// A duplicate is expected only for a message handled after the last
	// session save before a kill: dispatched at most a save interval (1 s)
	// plus a second of slack before it.
	window := 2 * time.Second
	outside := 0
	for _, c := range res.duplicates {
		at := tr.sentAt(c)
		if !slices.ContainsFunc(kills, func(k kill) bool { return !at.Before(k.at.Add(-window)) && !at.After(k.at.Add(200*time.Millisecond)) }) {
			outside++
		}
	}
	// A cluster killed again before it was ready is restarted once, but
	// spawned twice: count spawns.
	respawns := countEvents(events(ctx, f.rdb, f.ks), lifecycle.ClusterSpawned) - f.opts.clusters
	identifies := f.srv.Stats().Identifies - identBase
	resumes := okResumes(f) - resumesBase
	return []figure{
		fig("clusters killed", len(kills) > 0, "> 0", "%d", len(kills)),
		fig("kills respawned", respawns >= len(kills), strconv.Itoa(len(kills)), "%d", respawns),
		fig("shards resumed (RESUME ok)", resumes >= len(kills), ">= kills", "%d", resumes),
		fig("IDENTIFY after the start", identifies == 0, "0", "%d", identifies),
		fig("messages sent", res.sent > 0, "> 0", "%d", res.sent),
		fig("messages lost", res.lost == 0, "0", "%d", res.lost),
		fig("messages duplicated", outside == 0, "last unsaved 1 s", "%d", len(res.duplicates)),
		fig("duplicates outside that window", outside == 0, "0", "%d", outside),
	}, err
}

func okResumes(f *fleet) int {
	n := 0
	for _, r := range f.srv.Resumes() {
		if r.OK {
			n++
		}
	}
	return n
}

// recoveryLimit is how soon after a Redis fault the bot must serve again,
// records and cache repaired.
const recoveryLimit = 15 * time.Second

// redisFault is one way of taking Redis away and giving it back.
type redisFault struct {
	name string
	do   func(ctx context.Context, f *fleet) error
}

func redisOutages(ctx context.Context, e *env) ([]figure, error) {
	f, err := e.newFleet(ctx, fleetOptions{slowCopies: 2})
	if err != nil {
		return nil, err
	}
	defer f.close()
	tr, stopTraffic := startTraffic(ctx, f.srv, 50*time.Millisecond)
	defer stopTraffic()

	faults := []redisFault{
		{"SIGSTOP " + e.p.redisPause.String(), func(ctx context.Context, f *fleet) error {
			if err := e.redis.signal(syscall.SIGSTOP); err != nil {
				return err
			}
			defer e.redis.signal(syscall.SIGCONT)
			return sleepCtx(ctx, e.p.redisPause)
		}},
		{"restart, persistence on", func(context.Context, *fleet) error { return e.redis.restart(true) }},
		{"restart, persistence off", func(context.Context, *fleet) error { return e.redis.restart(false) }},
		{"maxmemory " + e.p.redisOOM.String(), func(ctx context.Context, f *fleet) error {
			c := e.redis.client()
			defer c.Close()
			if err := c.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
				return err
			}
			if err := c.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
				return err
			}
			defer c.ConfigSet(context.Background(), "maxmemory", "0")
			if err := c.Set(ctx, "chaos:probe", "x", 0).Err(); err == nil {
				return errors.New("Redis still accepts writes at maxmemory 1")
			}
			return sleepCtx(ctx, e.p.redisOOM)
		}},
		{"FLUSHALL", func(ctx context.Context, f *fleet) error {
			c := e.redis.client()
			defer c.Close()
			return c.FlushAll(ctx).Err()
		}},
	}
	var figs []figure
	var errs []error
	for _, fault := range faults {
		before := f.bot.pids()
		answered := tr.tally().answered
		t0 := time.Now()
		if err := fault.do(ctx, f); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", fault.name, err))
			continue
		}
		outage := time.Since(t0)
		during := tr.tally().answered - answered
		t1 := time.Now()
		var last error
		err := waitFor(ctx, "serving again", recoveryLimit, func() bool {
			last = f.health(ctx, tr, t1)
			return last == nil
		})
		back := time.Since(t1)
		replaced := 0
		after := f.bot.pids()
		for who, pid := range before {
			if after[who] != pid {
				replaced++
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w (last check: %v)", fault.name, err, last))
		}
		figs = append(figs,
			fig(fault.name+": children replaced", replaced == 0 && f.bot.running(), "0", "%d of %d", replaced, len(before)),
			fig(fault.name+": answered during", true, "-", "%d in %s", during, outage.Round(100*time.Millisecond)),
			fig(fault.name+": serving again", err == nil, "< "+recoveryLimit.String()+", cache repaired", "%s", back.Round(100*time.Millisecond)),
		)
	}
	stopTraffic()
	res, err := tr.waitAnswered(ctx, 30*time.Second)
	errs = append(errs, err)
	figs = append(figs, fig("messages lost", res.lost == 0, "0", "%d of %d", res.lost, res.sent))
	return figs, errors.Join(errs...)
}

type callResult struct {
	err  error
	took time.Duration
}

func serviceKill(ctx context.Context, e *env) ([]figure, error) {
	f, err := e.newFleet(ctx, fleetOptions{slowCopies: 2})
	if err != nil {
		return nil, err
	}
	defer f.close()
	node, err := f.ipc(ctx)
	if err != nil {
		return nil, err
	}
	const inFlight = 64
	const deadline = 5 * time.Second
	var ok, timedOut, other, hung, respawned int
	var slowest time.Duration
	var errs []error
	for round := 0; round < e.p.serviceRounds && ctx.Err() == nil; round++ {
		results := make([]callResult, inFlight)
		var wg sync.WaitGroup
		for i := range results {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				cctx, cancel := context.WithTimeout(ctx, deadline)
				defer cancel()
				t0 := time.Now()
				var out map[string]int
				err := services.Call(cctx, node, "slow", "work", map[string]int{"ms": 200 + 10*i}, &out)
				results[i] = callResult{err, time.Since(t0)}
			}(i)
		}
		// Let the copies take their share, then kill one.
		if err := sleepCtx(ctx, 150*time.Millisecond); err != nil {
			return nil, err
		}
		victim := -1
		for _, c := range f.bot.children() {
			if c.role == "service" && c.copy == round%2 {
				victim = c.pid
			}
		}
		if victim > 0 {
			_ = syscall.Kill(victim, syscall.SIGKILL)
		}
		done := make(chan struct{})
		go func() { wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(deadline + 2*time.Second):
		}
		for _, r := range results {
			switch {
			case r.took == 0:
				hung++
			case r.err == nil:
				ok++
			case errors.Is(r.err, redisipc.ErrTimeout) || errors.Is(r.err, context.DeadlineExceeded):
				timedOut++
			default:
				other++
				errs = append(errs, r.err)
			}
			slowest = max(slowest, r.took)
		}
		<-done
		if victim > 0 {
			err := waitFor(ctx, "the killed copy respawned", 30*time.Second, func() bool {
				n := 0
				for _, c := range f.bot.children() {
					if c.role == "service" && c.pid != victim {
						n++
					}
				}
				return n == 2
			})
			if err == nil {
				respawned++
			}
			errs = append(errs, err)
			errs = append(errs, f.waitReady(ctx, 30*time.Second))
		}
	}
	calls := inFlight * e.p.serviceRounds
	if len(errs) > 0 && errs[0] != nil {
		errs = errs[:1] // one example is enough
	}
	return []figure{
		fig("calls", true, "-", "%d", calls),
		fig("answered", ok > 0, "> 0", "%d", ok),
		fig("timed out", true, "-", "%d", timedOut),
		fig("failed otherwise", other == 0, "0", "%d", other),
		fig("hung past the deadline", hung == 0, "0", "%d", hung),
		fig("slowest call", slowest <= deadline+time.Second, "<= "+(deadline+time.Second).String(), "%s", slowest.Round(10*time.Millisecond)),
		fig("killed copies respawned", respawned == e.p.serviceRounds, strconv.Itoa(e.p.serviceRounds), "%d", respawned),
	}, errors.Join(errs...)
}

// bombs are expressions that allocate or compute without bound.
var bombs = []string{
	`len(repeat(repeat("x", 999999), 999999))`,
	`let r = 1..1000; sum(r, sum(r, sum(r, 1)))`,
	`len(map(1..1000000, repeat("y", 1000)))`,
}

func evalBombs(ctx context.Context, e *env) ([]figure, error) {
	f, err := e.newFleet(ctx, fleetOptions{slowCopies: 1})
	if err != nil {
		return nil, err
	}
	defer f.close()
	node, err := f.ipc(ctx)
	if err != nil {
		return nil, err
	}
	pidOf := func(target string) int {
		if target == redisipc.KindLauncher {
			return f.bot.cmd.Process.Pid
		}
		for _, c := range f.bot.children() {
			if c.String() == target || (c.role == "service" && "service:"+c.service == target) {
				return c.pid
			}
		}
		return 0
	}
	var figs []figure
	var errs []error
	for _, target := range []string{redisipc.KindLauncher, "cluster:0", "service:slow"} {
		pid := pidOf(target)
		refused, slowest := 0, time.Duration(0)
		for _, b := range bombs {
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			t0 := time.Now()
			_, err := node.Call(cctx, target, redisipc.OpEval, []byte(b))
			cancel()
			slowest = max(slowest, time.Since(t0))
			if err != nil {
				refused++
			}
		}
		pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
		_, perr := node.Ping(pctx, target)
		cancel()
		same := pid > 0 && pidOf(target) == pid
		peak := hwmMiB(pid)
		if perr != nil {
			errs = append(errs, fmt.Errorf("%s after the bombs: %w", target, perr))
		}
		figs = append(figs,
			fig(target+": bombs refused", refused == len(bombs), strconv.Itoa(len(bombs)), "%d", refused),
			fig(target+": unharmed", same && perr == nil, "same pid, answers", "pid %v, ping %v", same, perr == nil),
			fig(target+": slowest answer", slowest < 10*time.Second, "< 10s", "%s", slowest.Round(10*time.Millisecond)),
			fig(target+": peak RSS", peak > 0 && peak < 512, "< 512 MiB", "%.0f MiB", peak),
		)
	}
	return figs, errors.Join(errs...)
}

func gatewayFaults(ctx context.Context, e *env) ([]figure, error) {
	f, err := e.newFleet(ctx, fleetOptions{})
	if err != nil {
		return nil, err
	}
	defer f.close()
	tr, stopTraffic := startTraffic(ctx, f.srv, e.p.messageInterval)
	defer stopTraffic()
	identBase := f.srv.Stats().Identifies
	before := f.bot.pids()
	var errs []error
	allReady := func(what string) {
		errs = append(errs, waitFor(ctx, what, 30*time.Second, func() bool { return f.srv.ShardsReady(f.opts.shards) }))
	}

	// RECONNECT storm: every shard told to reconnect, again and again.
	for r := 0; r < e.p.reconnectRounds; r++ {
		for s := 0; s < f.opts.shards; s++ {
			_ = f.srv.Reconnect(s)
		}
		// The next round as soon as every shard is attached again.
		errs = append(errs, waitFor(ctx, "every shard back after a RECONNECT", 10*time.Second, func() bool { return f.srv.ShardsReady(f.opts.shards) }))
	}
	allReady("every shard back after the RECONNECT storm")
	// Resumable INVALID_SESSION on every shard, one non-resumable.
	for s := 0; s < f.opts.shards; s++ {
		_ = f.srv.InvalidateSession(s, true)
	}
	allReady("every shard back after resumable INVALID_SESSION")
	_ = f.srv.InvalidateSession(0, false)
	allReady("shard 0 identified again after INVALID_SESSION")
	// A half-open socket: no more ACKs, no more dispatches.
	_ = f.srv.StallShard(1)
	stalled := time.Now()
	errs = append(errs, waitFor(ctx, "shard 1 resumed after the stall", 30*time.Second, func() bool {
		return slices.ContainsFunc(f.srv.Resumes(), func(r discordtest.ResumeRecord) bool { return r.OK && r.Shard == 1 && r.At.After(stalled) })
	}))
	allReady("every shard back after the stall")
	stopTraffic()
	res, err := tr.waitAnswered(ctx, 30*time.Second)
	errs = append(errs, err)
	identifies := f.srv.Stats().Identifies - identBase

	// Close 4004 (authentication failed): the shard must not identify in a
	// loop.
	closed := time.Now()
	errs = append(errs, f.srv.CloseShard(2, 4004))
	if err := sleepCtx(ctx, 5*time.Second); err != nil {
		return nil, err
	}
	after4004 := 0
	for _, id := range f.srv.Identifies() {
		if id.Shard == 2 && id.At.After(closed) {
			after4004++
		}
	}
	replaced := 0
	now := f.bot.pids()
	for who, pid := range before {
		if now[who] != pid && who != "cluster:1" { // cluster 1 runs shard 2: 4004 may end it
			replaced++
		}
	}
	return []figure{
		fig("RECONNECTs sent", true, "-", "%d", f.srv.Stats().ReconnectsSent),
		fig("IDENTIFY during the faults", identifies == 1, "1 (the non-resumable one)", "%d", identifies),
		fig("messages lost", res.lost == 0, "0", "%d of %d", res.lost, res.sent),
		fig("messages duplicated", len(res.duplicates) == 0, "0", "%d", len(res.duplicates)),
		fig("IDENTIFY within 5s of close 4004", after4004 <= 1, "<= 1", "%d", after4004),
		fig("children replaced", replaced == 0, "0", "%d", replaced),
	}, errors.Join(errs...)
}
