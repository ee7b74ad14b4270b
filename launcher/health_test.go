package launcher

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"

	"github.com/megane-go/megane/identify"
	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/redisconn"
)

// clock is a test clock the health monitor reads.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func closed(ch <-chan struct{}) bool {
	select {
	case <-ch:
		return true
	default:
		return false
	}
}

func TestRedisHealthTransitions(t *testing.T) {
	clk := &clock{t: time.Unix(1000, 0)}
	h := newRedisHealth(healthParams{probe: func(context.Context) error { return nil }, interval: time.Second, now: clk.now})
	ttl := 3 * time.Second

	// Healthy from the start: start wrote to Redis.
	if !h.healthyFor(0) || h.healthyFor(ttl) {
		t.Fatalf("at start: healthyFor(0)=%v healthyFor(ttl)=%v, want true/false", h.healthyFor(0), h.healthyFor(ttl))
	}
	clk.add(ttl)
	if !h.healthyFor(ttl) || !closed(h.waitHealthy()) {
		t.Fatal("not healthy after a TTL without failure")
	}

	clk.add(time.Second)
	failAt := clk.now()
	h.record(errors.New("OOM command not allowed"))
	wait := h.waitHealthy()
	if h.healthyFor(0) || closed(wait) {
		t.Fatal("healthy after a failed probe")
	}
	if failing, err := h.failing(); !failing || err == nil {
		t.Errorf("failing() = %v, %v", failing, err)
	}
	clk.add(10 * time.Second)
	h.record(errors.New("OOM again"))
	if failed, since := h.failedSince(failAt); !failed || !since.IsZero() {
		t.Errorf("failedSince = %v, %v; want true and no recovery yet", failed, since)
	}

	clk.add(time.Second)
	recoveredAt := clk.now()
	h.record(nil)
	if !closed(wait) {
		t.Fatal("waitHealthy not released by the recovery")
	}
	if !h.healthyFor(0) || h.healthyFor(ttl) {
		t.Fatal("right after recovery Redis must be healthy, but not for a TTL yet")
	}
	if failed, since := h.failedSince(failAt); !failed || !since.Equal(recoveredAt) {
		t.Errorf("failedSince = %v, %v; want true, %v", failed, since, recoveredAt)
	}
	if failed, _ := h.failedSince(recoveredAt); failed {
		t.Error("a failure reported after the recovery")
	}
	clk.add(ttl)
	if !h.healthyFor(ttl) {
		t.Fatal("not healthy a TTL after the recovery")
	}

	// A probe cut short by the launcher stopping says nothing about Redis.
	h2 := newRedisHealth(healthParams{probe: func(ctx context.Context) error { return ctx.Err() }, interval: time.Second, now: clk.now})
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_ = h2.check(ctx)
	if !h2.healthyFor(0) {
		t.Error("a cancelled probe marked Redis as failing")
	}
}

// watchdogFixture is a launcher with one ready cluster, on miniredis, whose
// health monitor runs on a test clock.
type watchdogFixture struct {
	t   *testing.T
	m   *miniredis.Miniredis
	l   *Launcher
	p   *proc
	clk *clock
	w   *watchdog
}

func newWatchdogFixture(t *testing.T) *watchdogFixture {
	m, rdb := testredis.Mini(t)
	clk := &clock{t: time.Now()}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	l := &Launcher{cfg: Config{HeartbeatInterval: 100 * time.Millisecond}, role: RoleLauncher, log: log,
		rdb: rdb, ks: keyspace.MustNew("wd"), startedAt: clk.now()}
	l.health = newRedisHealth(healthParams{probe: l.probeRedis, interval: l.cfg.HeartbeatInterval, now: clk.now})
	p := newProc(l, kindCluster)
	p.state = StateReady
	l.clusters = []*proc{p}
	f := &watchdogFixture{t: t, m: m, l: l, p: p, clk: clk, w: &watchdog{misses: map[*proc]missCount{}}}
	_ = f.probe() // the first probe writes the launcher's hash
	return f
}

func (f *watchdogFixture) round() {
	f.l.watchRound(context.Background(), f.clk.now(), time.Hour, f.w)
}

func (f *watchdogFixture) stale() bool {
	select {
	case <-f.p.staleCh:
		return true
	default:
		return false
	}
}

func (f *watchdogFixture) probe() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	return f.l.health.check(ctx)
}

// TestWatchdogJudgesOnlyWhileRedisWorks: a missing heartbeat counts only
// once Redis has taken the launcher's writes for a whole heartbeat TTL; a
// Redis that refuses writes (OOM: reads still work and the key is
// visibly gone) kills nobody, and any failure forgets the misses counted.
func TestWatchdogJudgesOnlyWhileRedisWorks(t *testing.T) {
	f := newWatchdogFixture(t)
	ttl := f.l.heartbeatTTL()
	f.clk.add(ttl)

	// Redis works and the cluster is silent: replaced on the second miss.
	f.round()
	if f.stale() {
		t.Fatal("stale after one miss")
	}
	f.round()
	if !f.stale() {
		t.Fatal("a silent cluster was not reported while Redis works")
	}

	// Redis refuses writes: the probe fails, misses are not counted.
	f.m.SetError("OOM command not allowed when used memory > 'maxmemory'.")
	err := f.probe()
	if !redisconn.IsOutage(err) {
		t.Fatalf("probe error %v is not an outage", err)
	}
	f.m.SetError("")
	for range 10 {
		f.clk.add(f.l.cfg.HeartbeatInterval)
		f.round()
	}
	if f.stale() {
		t.Fatal("a cluster was reported while Redis failed")
	}

	// Redis works again: children get a whole TTL to rewrite their keys.
	if err := f.probe(); err != nil {
		t.Fatal(err)
	}
	for elapsed := time.Duration(0); elapsed < ttl; elapsed += f.l.cfg.HeartbeatInterval {
		f.round()
		f.clk.add(f.l.cfg.HeartbeatInterval)
	}
	if f.stale() {
		t.Fatal("a cluster was reported within a TTL of the recovery")
	}
	// One miss, then a failure: the miss is forgotten.
	f.round()
	f.m.SetError("LOADING Redis is loading the dataset in memory")
	_ = f.probe()
	f.m.SetError("")
	_ = f.probe()
	f.clk.add(ttl)
	f.round()
	if f.stale() {
		t.Fatal("a miss from before a failure was counted")
	}
	// Redis emptied (FLUSHALL): its writes work, yet every key is gone;
	// children get a TTL to rewrite theirs.
	f.clk.add(ttl)
	f.round()
	if !f.stale() {
		t.Fatal("two misses while Redis works were not reported")
	}
	f.round() // one miss
	f.m.FlushAll()
	if err := f.probe(); err != nil {
		t.Fatalf("probe after FLUSHALL: %v", err)
	}
	if f.l.health.healthyFor(f.l.heartbeatTTL()) {
		t.Fatal("Redis that lost every key counts as healthy for a TTL")
	}
	f.round()
	f.clk.add(ttl)
	f.round()
	if f.stale() {
		t.Fatal("a miss from before Redis was emptied was counted")
	}
	// A heartbeat that is back resets the count.
	f.l.rdb.Set(context.Background(), f.l.ks.ClusterHeartbeat(0), "1", time.Minute)
	f.round()
	f.round()
	if f.stale() {
		t.Fatal("a heartbeating cluster was reported")
	}
	f.l.rdb.Del(context.Background(), f.l.ks.ClusterHeartbeat(0))
	f.round()
	f.round()
	if !f.stale() {
		t.Fatal("a cluster silent while Redis works was not reported")
	}
}

// TestExitDuringOutageIsNotACrash: a child exiting while the probe fails,
// or within a heartbeat TTL of a failure, exited because of Redis.
func TestExitDuringOutageIsNotACrash(t *testing.T) {
	f := newWatchdogFixture(t)
	ctx := context.Background()
	f.clk.add(time.Hour)
	if f.p.exitedForRedis(ctx) {
		t.Fatal("an exit while Redis works was blamed on Redis")
	}
	f.m.SetError("OOM command not allowed when used memory > 'maxmemory'.")
	if !f.p.exitedForRedis(ctx) {
		t.Fatal("an exit while Redis refuses writes was counted as a crash")
	}
	f.m.SetError("")
	if !f.p.exitedForRedis(ctx) {
		t.Fatal("an exit right after Redis recovered was counted as a crash")
	}
	f.clk.add(f.l.heartbeatTTL() + time.Millisecond)
	if f.p.exitedForRedis(ctx) {
		t.Fatal("an exit a TTL after the recovery was blamed on Redis")
	}
}

// TestEnsureRecordsRewritesWhatIsMissing: after a FLUSHALL the launcher
// rewrites its hash (the probe), the gateway hash, the whole shard map and
// its fields of every cluster's hash; with nothing missing it writes
// nothing.
func TestEnsureRecordsRewritesWhatIsMissing(t *testing.T) {
	f := newWatchdogFixture(t)
	ctx := context.Background()
	l := f.l
	l.cfg.Clusters, l.totalClusters, l.shardCount, l.maxConcurrency = 2, 2, 4, 1
	l.gateway = identify.GatewayInfo{URL: "wss://gw", Shards: 4, MaxConcurrency: 1, Total: 1000, Remaining: 900}
	p1 := newProc(l, kindCluster)
	p1.id = 1
	l.clusters = append(l.clusters, p1)
	l.sink = newSink(l.rdb, l.ks, nil, l.log)

	// A cluster already rewrote its part of the shard map.
	l.rdb.HSet(ctx, l.ks.ShardMap(), "shard_count", 4, "2", 1, "3", 1)
	if err := f.probe(); err != nil {
		t.Fatal(err)
	}
	l.ensureRecords(ctx)
	l.sink.close()

	if st, _ := l.rdb.HGet(ctx, l.ks.Launcher(), "status").Result(); st != "running" {
		t.Errorf("launcher status %q", st)
	}
	if info, err := identify.LoadGatewayInfo(ctx, l.rdb, l.ks); err != nil || info.URL != "wss://gw" || info.Shards != 4 {
		t.Errorf("gateway %+v, %v", info, err)
	}
	sm, _ := l.rdb.HGetAll(ctx, l.ks.ShardMap()).Result()
	if len(sm) != 6 || sm["clusters"] != "2" || sm["0"] != "0" || sm["3"] != "1" {
		t.Errorf("shard map %v", sm)
	}
	for c := range 2 {
		if v, _ := l.rdb.HGet(ctx, l.ks.Cluster(c), "supervisor").Result(); v == "" {
			t.Errorf("cluster %d hash lacks supervisor", c)
		}
	}

	// Nothing missing: nothing written.
	l.sink = newSink(l.rdb, l.ks, nil, l.log)
	l.rdb.HSet(ctx, l.ks.Gateway(), "url", "kept")
	l.ensureRecords(ctx)
	l.sink.close()
	if v, _ := l.rdb.HGet(ctx, l.ks.Gateway(), "url").Result(); v != "kept" {
		t.Errorf("an existing gateway hash was rewritten")
	}
}

// A Redis that answers late (paused by SIGSTOP, a stalled network) is
// failing, not working: children's heartbeats were blocked the same way.
// The probe and the watchdog's own round trips record it, and the watchdog
// then waits a heartbeat TTL of health before judging anyone.
func TestSlowRedisIsAnOutage(t *testing.T) {
	clk := &clock{t: time.Unix(1000, 0)}
	slow := false
	h := newRedisHealth(healthParams{probe: func(context.Context) error {
		if slow {
			clk.add(3 * time.Second) // the write went through, late
		}
		return nil
	}, interval: 500 * time.Millisecond, now: clk.now})
	clk.add(2 * time.Second)
	if !h.healthyFor(1500 * time.Millisecond) {
		t.Fatal("not healthy after quick probes")
	}
	slow = true
	if err := h.check(context.Background()); err == nil {
		t.Fatal("a probe that took 3s (interval 500ms) is not a failure")
	}
	if h.healthyFor(0) {
		t.Fatal("healthy right after a slow probe")
	}
	slow = false
	if err := h.check(context.Background()); err != nil {
		t.Fatalf("quick probe after the slow one: %v", err)
	}
	if h.healthyFor(1500 * time.Millisecond) {
		t.Fatal("healthy for a TTL at once after the recovery")
	}
	clk.add(1500 * time.Millisecond)
	if !h.healthyFor(1500 * time.Millisecond) {
		t.Fatal("not healthy a TTL after the recovery")
	}

	start := clk.now()
	clk.add(100 * time.Millisecond)
	if h.slowRoundTrip(start, "a quick check") {
		t.Fatal("a 100ms round trip counted as slow")
	}
	start = clk.now()
	clk.add(2 * time.Second)
	if !h.slowRoundTrip(start, "a slow check") {
		t.Fatal("a 2s round trip not counted as slow")
	}
	if failing, err := h.failing(); !failing || err == nil {
		t.Fatalf("failing = %v, %v after a slow watchdog round trip", failing, err)
	}
}
