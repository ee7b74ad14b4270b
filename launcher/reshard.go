package launcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/megane-go/megane/cache"
	"github.com/megane-go/megane/cluster"
	"github.com/megane-go/megane/clusterhash"
	"github.com/megane-go/megane/control"
	"github.com/megane-go/megane/identify"
	"github.com/megane-go/megane/launcherhash"
	"github.com/megane-go/megane/lifecycle"
	"github.com/megane-go/megane/sessions"
	"github.com/megane-go/megane/shardmap"
	"github.com/megane-go/megane/shardstatus"
)

// ErrReshard is wrapped by every error of a re-shard that left the old
// generation serving: the new count was refused (the numbers say why), or
// the new generation failed and was torn down.
var ErrReshard = errors.New("launcher: re-shard")

// ReshardOptions shape a re-shard (Reshard).
type ReshardOptions struct {
	// Shards is the new shard count. Zero asks Discord's recommendation
	// (GET /gateway/bot), rounded as the launcher is configured
	// (Config.GuildsPerShard, Config.LargeBotSharding).
	Shards int
}

// ReshardReport is what a re-shard did.
type ReshardReport = control.ReshardReply

// Reshard changes the bot's shard count without taking it offline.
//
// A new generation of clusters (as many as now, the new shards split
// among them) starts beside the running one in standby
// (cluster.Options.Standby): its shards IDENTIFY through the bot's
// identify limiter and receive their guilds, but deliver nothing, and
// keep their records in a staging keyspace (keyspace.Keyspace.Reshard).
// Refused, with the numbers, when the session start budget cannot pay for
// the new shards plus Config.IdentifyReserve. Once every new cluster is
// ready, the switch: the new generation stops resumably (its sessions
// saved), then the old one; the new sessions move into the bot's keyspace,
// the cache's per-shard records move to the new shard map
// (cache.Rebucket; entities stay in place), the shard map and gateway
// record take the new count, and the clusters start again on the new
// shards, RESUMEing the new sessions: Discord replays what was dispatched
// since the standby stopped. Events dispatched between the standby's stop
// and the old generation's stop reach the listeners twice; none is lost.
//
// A new generation that fails (a cluster exits, or is not ready within
// the ready timeout) is torn down and the old one serves on; Reshard then
// returns an error wrapping ErrReshard. Progress goes out as
// lifecycle.ReshardStep events. A bot run by several launchers cannot be
// re-sharded this way yet (ErrReshard).
//
// Set MEGANE_SHARDS (Config.Shards) to the new count before the launcher
// restarts, or leave it unset: a launcher started with another count
// drops every session and identifies.
func (l *Launcher) Reshard(ctx context.Context, o ReshardOptions) (ReshardReport, error) {
	rep := ReshardReport{From: l.currentShardCount()}
	if err := l.checkRunning(); err != nil {
		return rep, err
	}
	if !l.rolling.TryLock() {
		return rep, ErrBusy
	}
	defer l.rolling.Unlock()
	start := time.Now()
	rs := &resharder{l: l, rep: &rep}
	err := rs.run(ctx, o)
	rep.Took = time.Since(start)
	rep.Status, _ = l.Status()
	if err != nil {
		rs.step("rollback", -1, "re-shard FAILED, the old generation serves on: "+err.Error(), 0)
		return rep, err
	}
	rs.step("done", -1, fmt.Sprintf("re-sharded %d → %d shards in %s (switch %s): %d identified, %d resumed, %d replayed",
		rep.From, rep.To, rep.Took.Round(time.Millisecond), rep.Switch.Round(time.Millisecond),
		rep.Identified, rep.Resumed, rep.Replayed), rep.Took)
	return rep, nil
}

func (l *Launcher) currentShardCount() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.shardCount
}

// resharder is one run of Reshard.
type resharder struct {
	l   *Launcher
	rep *ReshardReport
	mu  sync.Mutex // rep.Steps, from the standby watchers
}

// step records and publishes one step.
func (rs *resharder) step(phase string, cl int, detail string, d time.Duration) {
	rs.mu.Lock()
	rs.rep.Steps = append(rs.rep.Steps, control.ReshardStep{Phase: phase, Cluster: cl, Detail: detail, Duration: d})
	rs.mu.Unlock()
	rs.l.log.Info("re-shard: "+detail, slog.String("phase", phase))
	rs.l.sink.event(lifecycle.Event{Type: lifecycle.ReshardStep, Cluster: cl, Shard: -1, Detail: phase + ": " + detail})
}

func (rs *resharder) run(ctx context.Context, o ReshardOptions) error {
	l := rs.l
	from := rs.rep.From
	to, err := rs.target(ctx, o.Shards)
	if err != nil {
		return err
	}
	rs.rep.To = to
	clusters := len(l.clusters)
	if to == from {
		return fmt.Errorf("%w: the bot runs %d shards already", ErrReshard, to)
	}
	if to < clusters {
		return fmt.Errorf("%w: %d shards for %d clusters: a cluster needs at least one shard", ErrReshard, to, clusters)
	}
	if err := identify.CheckBudget(ctx, l.rdb, l.ks, to, l.cfg.IdentifyReserve); err != nil {
		return fmt.Errorf("%w: the %d new shards must identify: %w", ErrReshard, to, err)
	}
	ranges := splitShards(to, clusters)
	staging := l.ks.Reshard()
	rs.clearStaging(ctx, to, clusters)
	defer rs.clearStaging(context.WithoutCancel(ctx), to, clusters)
	rs.step("plan", -1, fmt.Sprintf("%d → %d shards over %d clusters; the new generation identifies in standby (namespace %s)",
		from, to, clusters, staging.Namespace()), 0)

	standby, err := rs.startStandby(ctx, ranges, to)
	if err != nil {
		return err
	}
	rs.rep.Identified = rs.countStaging(ctx, lifecycle.ShardReady)

	// The switch: the standby stops first, so whatever it did not read
	// is replayed to the new clusters; the old generation delivers until
	// its own stop.
	t0 := time.Now()
	from0 := l.lastEventID(ctx)
	stopAll(standby, l.cfg.ShutdownTimeout, l.log)
	saved, err := sessions.Load(ctx, l.rdb, staging, allShards(to))
	if err != nil {
		return fmt.Errorf("%w: read the new sessions: %w", ErrReshard, err)
	}
	for s := range to {
		if st, ok := saved[s]; !ok || st.ShardCount != to {
			return fmt.Errorf("%w: the new generation saved no session for shard %d", ErrReshard, s)
		}
	}
	rs.step("switch", -1, fmt.Sprintf("new generation stopped with %d sessions saved; stopping the old one", len(saved)), time.Since(t0))

	// Every launcher stops its clusters and holds them (with several
	// launchers, over IPC); the records move while none runs; then each
	// starts its clusters on the shards the new map gives them.
	peers, err := l.reshardPeers(ctx, control.ReshardHoldTimeout)
	if err != nil {
		return fmt.Errorf("%w: %w", ErrReshard, err)
	}
	var held []reshardPeer
	var holdErr error
	for _, p := range peers {
		// A peer that failed may hold some clusters all the same: it is
		// asked to let them go too.
		held = append(held, p)
		if err := p.hold(ctx); err != nil {
			holdErr = fmt.Errorf("%s could not stop its clusters: %w", p.name, err)
			break
		}
	}
	var moveErr error
	if holdErr == nil {
		moveErr = rs.move(ctx, saved, from, to, ranges)
	}
	// Not the request's context: held clusters must start again even when
	// the caller gave up.
	rctx := context.WithoutCancel(ctx)
	var failed []error
	for _, p := range held {
		if err := p.resume(rctx); err != nil {
			failed = append(failed, fmt.Errorf("%s: %w", p.name, err))
		}
	}
	rs.rep.Switch = time.Since(t0)
	if holdErr != nil {
		return fmt.Errorf("%w: %w; the clusters start again on their old shards", ErrReshard, holdErr)
	}
	if moveErr != nil {
		// The records are half moved: the clusters came back on whatever
		// shards the move reached; say so plainly.
		return fmt.Errorf("launcher: re-shard: moving the records failed mid-switch: %w", moveErr)
	}
	rs.countSwitch(ctx, from0, to)
	rs.step("switch", -1, fmt.Sprintf("every cluster runs the new shards: switch took %s, %d shards resumed, %d events replayed",
		rs.rep.Switch.Round(time.Millisecond), rs.rep.Resumed, rs.rep.Replayed), rs.rep.Switch)
	if len(failed) > 0 {
		return fmt.Errorf("launcher: re-shard: clusters not ready after the switch: %w", errors.Join(failed...))
	}
	return nil
}

// target settles the new shard count.
func (rs *resharder) target(ctx context.Context, shards int) (int, error) {
	l := rs.l
	if shards < 0 || shards > maxShards {
		return 0, fmt.Errorf("%w: %d shards is outside 1..%d", ErrReshard, shards, maxShards)
	}
	if shards > 0 {
		return shards, nil
	}
	gb, err := identify.FetchGatewayInfo(ctx, http.DefaultClient, l.cfg.RESTURL, l.cfg.Token)
	if err != nil {
		return 0, fmt.Errorf("%w: ask Discord for the recommended shard count: %w", ErrReshard, err)
	}
	n := shardCount(gb.Shards, l.cfg.GuildsPerShard, l.cfg.LargeBotSharding, gb.MaxConcurrency)
	if n > maxShards {
		return 0, fmt.Errorf("%w: Discord recommends %d shards (%d as configured), more than the %d a launcher runs",
			ErrReshard, gb.Shards, n, maxShards)
	}
	return n, nil
}

// standbyProc is one cluster of the new generation.
type standbyProc struct {
	id     int
	shards []int
	c      *child
}

// startStandby starts the new generation and waits until every cluster is
// ready. On failure it stops what it started.
func (rs *resharder) startStandby(ctx context.Context, ranges [][]int, to int) ([]*standbyProc, error) {
	l := rs.l
	var procs []*standbyProc
	for id, shards := range ranges {
		p := &proc{l: l, kind: kindCluster, id: id, shards: shards}
		env := append(l.childEnv(p), envShards+"="+strconv.Itoa(to), envStandby+"=1")
		c, err := startChild(l.exe, env)
		if err != nil {
			stopAll(procs, l.cfg.ShutdownTimeout, l.log)
			return nil, fmt.Errorf("%w: start new cluster %d: %w", ErrReshard, id, err)
		}
		procs = append(procs, &standbyProc{id: id, shards: shards, c: c})
		l.log.Info("re-shard: started new cluster "+strconv.Itoa(id), slog.String("shards", shardmap.FormatRanges(shards)), slog.Int("pid", c.pid))
	}
	mc := max(l.maxConcurrency, 1)
	timeout := l.cfg.ReadyTimeout + time.Duration(len(ranges[0])+1)*l.cfg.ReadyTimeoutPerShard +
		time.Duration((to+mc-1)/mc)*max(l.cfg.IdentifyWindow, identifyInterval) + cluster.StandbyGuildWait
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	t0 := time.Now()
	errCh := make(chan error, len(procs))
	for _, sp := range procs {
		go func() {
			select {
			case <-sp.c.ready:
				rs.step("standby", sp.id, fmt.Sprintf("new cluster %d ready (shards %s) after %s",
					sp.id, shardmap.FormatRanges(sp.shards), time.Since(t0).Round(time.Millisecond)), time.Since(t0))
				errCh <- nil
			case <-sp.c.exited:
				errCh <- fmt.Errorf("new cluster %d exited before it was ready (%s)", sp.id, sp.c.describeExit())
			}
		}()
	}
	var err error
	for range procs {
		select {
		case e := <-errCh:
			if e != nil && err == nil {
				err = e
			}
		case <-deadline.C:
			err = fmt.Errorf("the new generation was not ready within %s", timeout)
		case <-ctx.Done():
			err = ctx.Err()
		}
		if err != nil {
			break
		}
	}
	if err != nil {
		for _, sp := range procs {
			sp.c.kill()
		}
		for _, sp := range procs {
			<-sp.c.exited
		}
		return nil, fmt.Errorf("%w: %w; the new generation was torn down", ErrReshard, err)
	}
	return procs, nil
}

// stopAll stops standby clusters together (SIGTERM: they save their
// sessions) and waits for them.
func stopAll(procs []*standbyProc, timeout time.Duration, log *slog.Logger) {
	var wg sync.WaitGroup
	for _, sp := range procs {
		wg.Go(func() { sp.c.stop(timeout, log) })
	}
	wg.Wait()
}

// move puts the new generation's records in the bot's keyspace while no
// cluster runs: sessions, the cache's per-shard records, shard statuses,
// the shard map, the gateway record, and the clusters' shards.
func (rs *resharder) move(ctx context.Context, saved map[int]sessions.State, from, to int, ranges [][]int) error {
	l := rs.l
	t0 := time.Now()
	for s := range max(from, to) {
		if err := sessions.Delete(ctx, l.rdb, l.ks, s); err != nil {
			return err
		}
	}
	for s := range to {
		st := saved[s]
		st.Fence = 0
		if err := sessions.Save(ctx, l.rdb, l.ks, s, st); err != nil {
			return err
		}
	}
	cr, err := cache.Rebucket(ctx, l.rdb, l.ks, from, to)
	if err != nil {
		return err
	}
	pipe := l.rdb.Pipeline()
	for s := to; s < from; s++ {
		shardstatus.Delete(ctx, pipe, l.ks, s)
		pipe.Del(ctx, l.ks.ShardProjected(s))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	m := shardmap.Map{ShardCount: to, Clusters: len(ranges), Owners: map[int]int{}}
	for c, shards := range ranges {
		for _, s := range shards {
			m.Owners[s] = c
		}
	}
	if err := shardmap.Save(ctx, l.rdb, l.ks, m); err != nil {
		return err
	}
	if err := identify.SetShardCount(ctx, l.rdb, l.ks, to); err != nil {
		return err
	}
	if err := launcherhash.SetShardCount(ctx, l.rdb, l.ks, to).Err(); err != nil {
		return err
	}
	rs.step("switch", -1, fmt.Sprintf("records moved in %s: %d sessions, %d guilds rebucketed (%d changed shard), shard map of %d shards",
		time.Since(t0).Round(time.Millisecond), len(saved), cr.Guilds, cr.Moved, to), time.Since(t0))
	return nil
}

// countStaging counts the new generation's events of type t.
func (rs *resharder) countStaging(ctx context.Context, t lifecycle.Type) int {
	evs, _, err := lifecycle.Read(ctx, rs.l.rdb, rs.l.ks.Reshard(), "0-0", 100_000)
	if err != nil {
		return 0
	}
	n := 0
	for _, ev := range evs {
		if ev.Type == t {
			n++
		}
	}
	return n
}

// countSwitch counts the resumes (and their replays) of the clusters'
// restart on the new shards.
func (rs *resharder) countSwitch(ctx context.Context, from string, shards int) {
	step := RollStep{}
	rs.l.countStep(ctx, &step, rs.l.clusters, from, shards)
	rs.rep.Resumed, rs.rep.Replayed = step.Resumed, step.Replayed
	rs.rep.Identified += step.Identified
}

// clearStaging deletes what a new generation keeps in the staging
// keyspace; IPC registrations and statistics there expire by themselves.
func (rs *resharder) clearStaging(ctx context.Context, shards, clusters int) {
	l := rs.l
	st := l.ks.Reshard()
	for s := range shards {
		if err := sessions.Delete(ctx, l.rdb, st, s); err != nil {
			l.log.Warn("re-shard: could not clear the staging keyspace", slog.Any("error", err))
			return
		}
	}
	pipe := l.rdb.Pipeline()
	for s := range shards {
		shardstatus.Delete(ctx, pipe, st, s)
	}
	for c := range clusters {
		clusterhash.Delete(ctx, pipe, st, c)
	}
	shardmap.Delete(ctx, pipe, st)
	lifecycle.Delete(ctx, pipe, st)
	if _, err := pipe.Exec(ctx); err != nil {
		l.log.Warn("re-shard: could not clear the staging keyspace", slog.Any("error", err))
	}
}
