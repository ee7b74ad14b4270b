package cluster_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/disgoorg/snowflake/v2"

	"github.com/megane-go/megane/cache"
	"github.com/megane-go/megane/cluster"
	"github.com/megane-go/megane/discordtest"
	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/internal/testwait"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/lifecycle"
	"github.com/megane-go/megane/sessions"
)

type nopWorker struct{}

func (nopWorker) Launch(context.Context, *cluster.Cluster) error { return nil }

func TestRunRejectsBadOptions(t *testing.T) {
	_, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("test")
	good := cluster.Options{
		ID: 0, ShardIDs: []int{0, 1}, ShardCount: 2, MaxConcurrency: 1,
		Token: discordtest.TokenFor(discordtest.DefaultAppID), GatewayURL: "ws://127.0.0.1:1",
		RESTURL: "http://127.0.0.1:1/api/v10", Redis: rdb, Keys: ks,
	}
	tests := []struct {
		name   string
		mutate func(*cluster.Options)
		worker cluster.Worker
		want   string
	}{
		{"nil worker", func(*cluster.Options) {}, nil, "Worker is nil"},
		{"no token", func(o *cluster.Options) { o.Token = "" }, nopWorker{}, "Token is empty"},
		{"no redis", func(o *cluster.Options) { o.Redis = nil }, nopWorker{}, "Redis is nil"},
		{"zero keyspace", func(o *cluster.Options) { o.Keys = keyspace.Keyspace{} }, nopWorker{}, "zero Keyspace"},
		{"bad limiter", func(o *cluster.Options) { o.Limiter = "file" }, nopWorker{}, `Limiter "file"`},
		{"duplicate shard", func(o *cluster.Options) { o.ShardIDs = []int{1, 1} }, nopWorker{}, "listed twice"},
		{"shard beyond count", func(o *cluster.Options) { o.ShardIDs = []int{0, 2} }, nopWorker{}, "not below the shard count 2"},
		{"query in gateway url", func(o *cluster.Options) { o.GatewayURL = "ws://x/?v=10" }, nopWorker{}, "query string"},
		{"negative interval", func(o *cluster.Options) { o.HeartbeatInterval = -time.Second }, nopWorker{}, "HeartbeatInterval -1s is negative"},
		{"bad cache config", func(o *cluster.Options) { o.Cache = &cache.Config{Entities: []cache.Entity{"bans"}} }, nopWorker{}, `unknown entity "bans"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			o := good
			tt.mutate(&o)
			err := cluster.Run(context.Background(), o, tt.worker)
			if !errors.Is(err, cluster.ErrInvalidOptions) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run = %v, want ErrInvalidOptions mentioning %q", err, tt.want)
			}
		})
	}
}

// messagePayload is a guild MESSAGE_CREATE as Discord sends it.
func messagePayload(id, channelID, guildID snowflake.ID, content string) map[string]any {
	return map[string]any{
		"id": id, "channel_id": channelID, "guild_id": guildID,
		"author":  map[string]any{"id": "42", "username": "user", "discriminator": "0"},
		"member":  map[string]any{"roles": []string{}, "joined_at": "2024-01-01T00:00:00Z", "deaf": false, "mute": false, "flags": 0},
		"content": content, "timestamp": time.Now().UTC().Format(time.RFC3339Nano), "edited_timestamp": nil,
		"tts": false, "mention_everyone": false, "mentions": []any{}, "mention_roles": []any{}, "attachments": []any{},
		"embeds": []any{}, "components": []any{}, "pinned": false, "type": 0, "flags": 0,
	}
}

var lastMsgID atomic.Uint64

func init() { lastMsgID.Store(1_300_000_000_000_000_000) }

// sendBatch dispatches n messages round-robin over the world's guilds, with
// contents prefix-0..prefix-(n-1), and returns the contents.
func sendBatch(t *testing.T, srv *discordtest.Server, prefix string, n int) []string {
	t.Helper()
	world := srv.World()
	var out []string
	for i := range n {
		g := world.Guilds[i%len(world.Guilds)]
		ch, ok := world.FirstTextChannel(g.ID)
		if !ok {
			t.Fatalf("guild %s has no text channel", g.ID)
		}
		content := fmt.Sprintf("%s-%d", prefix, i)
		id := snowflake.ID(lastMsgID.Add(1))
		if _, err := srv.Dispatch(g.ID, "MESSAGE_CREATE", messagePayload(id, ch.ID, g.ID, content)); err != nil {
			t.Fatalf("dispatch %s: %v", content, err)
		}
		out = append(out, content)
	}
	return out
}

func allReplied(srv *discordtest.Server, contents []string) func() bool {
	return func() bool {
		got := replies(srv)
		for _, c := range contents {
			if got[c] == 0 {
				return false
			}
		}
		return true
	}
}

// TestIdentifyLimitAcrossProcesses runs two cluster processes that split
// four shards of a bot with max_concurrency 1. With the Redis limiter the
// fake records no identify-concurrency violation; with disgo's per-process
// limiter it does, which shows the check can fail.
func TestIdentifyLimitAcrossProcesses(t *testing.T) {
	testredis.EachBackend(t, testIdentifyLimitAcrossProcesses)
}

func testIdentifyLimitAcrossProcesses(t *testing.T) {
	for _, tc := range []struct {
		limiter        string
		wantViolations bool
	}{
		{cluster.LimiterRedis, false},
		{cluster.LimiterLocal, true},
	} {
		t.Run(tc.limiter, func(t *testing.T) {
			t.Parallel()
			_, url, ks := realRedis(t)
			const window = time.Second
			srv := newFake(t, discordtest.Options{
				Shards: 4, MaxConcurrency: 1, IdentifyWindow: window,
				HeartbeatInterval: time.Second, World: discordtest.WorldOptions{Guilds: 8},
			})
			base := procConfig{
				ns: ks.Namespace(), shardCount: 4, maxConc: 1, limiter: tc.limiter,
				windowMS: int(window / time.Millisecond), redisURL: url, srv: srv,
			}
			a, b := base, base
			a.clusterID, a.shards = 0, "0,1"
			b.clusterID, b.shards = 1, "2,3"
			pa := startProc(t, "cluster0", a)
			pb := startProc(t, "cluster1", b)
			pa.waitReady(30 * time.Second)
			pb.waitReady(30 * time.Second)

			ids := srv.Identifies()
			if len(ids) != 4 {
				t.Fatalf("%d identifies, want 4", len(ids))
			}
			v := srv.Violations()
			for _, x := range v {
				t.Logf("violation: shard %d bucket %d %s after the previous identify", x.Shard, x.Bucket, x.SincePrevious)
			}
			if tc.wantViolations && len(v) == 0 {
				t.Fatal("disgo's per-process limiter produced no violation; the test cannot tell the limiters apart")
			}
			if !tc.wantViolations && len(v) != 0 {
				t.Fatalf("%d identify-concurrency violations with the Redis limiter", len(v))
			}
			if tc.limiter == cluster.LimiterRedis {
				for i := 1; i < len(ids); i++ {
					if gap := ids[i].At.Sub(ids[i-1].At); gap < window {
						t.Errorf("identify %d came %s after the previous one", i, gap)
					}
				}
			}
			for _, p := range []*proc{pa, pb} {
				if err := p.stop(syscall.SIGTERM, 15*time.Second); err != nil {
					t.Fatalf("%s exit: %v", p.name, err)
				}
			}
		})
	}
}

// TestGracefulRestartResumes stops a cluster with SIGTERM, dispatches
// messages while it is down and starts it again: every shard RESUMEs (no
// IDENTIFY) and every message is handled exactly once.
func TestGracefulRestartResumes(t *testing.T) { testredis.EachBackend(t, testGracefulRestartResumes) }

func testGracefulRestartResumes(t *testing.T) {
	t.Parallel()
	rdb, url, ks := realRedis(t)
	srv := newFake(t, discordtest.Options{
		Shards: 2, MaxConcurrency: 2, HeartbeatInterval: time.Second,
		World: discordtest.WorldOptions{Guilds: 4},
	})
	cfg := procConfig{ns: ks.Namespace(), shards: "0,1", shardCount: 2, maxConc: 2, redisURL: url, srv: srv}
	ctx := context.Background()

	p1 := startProc(t, "first", cfg)
	p1.waitReady(20 * time.Second)
	before := sendBatch(t, srv, "before", 6)
	testwait.For(t, 10*time.Second, "replies before the restart", allReplied(srv, before))

	if err := p1.stop(syscall.SIGTERM, 15*time.Second); err != nil {
		t.Fatalf("graceful stop: %v (errors %v)", err, p1.errors())
	}
	if p1.count("stopped") != 1 {
		t.Fatal("Run did not return nil on SIGTERM")
	}
	saved, err := sessions.Load(ctx, rdb, ks, []int{0, 1})
	if err != nil {
		t.Fatal(err)
	}
	for shard := range 2 {
		st, _ := srv.ShardStatus(shard)
		s, ok := saved[shard]
		if !ok || s.SessionID != st.SessionID || s.Sequence != st.Seq {
			t.Fatalf("shard %d saved %+v, fake session %s at seq %d", shard, s, st.SessionID, st.Seq)
		}
		if status := rdb.HGet(ctx, ks.ShardStatus(shard), "status").Val(); status != "stopped" {
			t.Fatalf("shard %d status %q after stop", shard, status)
		}
	}
	if n := rdb.Exists(ctx, ks.ClusterHeartbeat(0)).Val(); n != 0 {
		t.Fatal("heartbeat key left behind by a graceful stop")
	}

	identifies, resumes := len(srv.Identifies()), len(srv.Resumes())
	during := sendBatch(t, srv, "during", 8)

	p2 := startProc(t, "second", cfg)
	p2.waitReady(20 * time.Second)
	testwait.For(t, 10*time.Second, "replies to what was sent while down", allReplied(srv, during))

	if got := len(srv.Identifies()); got != identifies {
		t.Fatalf("restart identified %d times; want resumes only", got-identifies)
	}
	newResumes := srv.Resumes()[resumes:]
	if len(newResumes) != 2 {
		t.Fatalf("%d resumes after the restart, want 2: %+v", len(newResumes), newResumes)
	}
	for _, r := range newResumes {
		if !r.OK {
			t.Fatalf("resume failed: %+v", r)
		}
	}
	got := replies(srv)
	for _, c := range append(before, during...) {
		if got[c] != 1 {
			t.Errorf("%q handled %d times, want exactly once", c, got[c])
		}
	}
	if p2.count("message") != len(during) {
		t.Errorf("second process saw %d messages, want %d", p2.count("message"), len(during))
	}
	// OnRawEvent and a disgo Raw listener both got every payload in full.
	raw, listener := p2.all("raw"), p2.all("raw_listener")
	if len(raw) != len(during) || len(listener) != len(during) {
		t.Errorf("%d OnRawEvent calls and %d Raw listener calls for %d messages", len(raw), len(listener), len(during))
	}
	// Shards run concurrently, so compare the sizes as sorted lists.
	lens := func(evs []procEvent) []int {
		out := make([]int, len(evs))
		for i, e := range evs {
			out[i] = e.Len
		}
		slices.Sort(out)
		return out
	}
	if a, b := lens(raw), lens(listener); !slices.Equal(a, b) || (len(a) > 0 && a[0] == 0) {
		t.Errorf("payload sizes: OnRawEvent %v, Raw listener %v", a, b)
	}
	// Lifecycle events go out with the cluster's next batched write: wait
	// for them rather than reading once.
	testwait.For(t, 10*time.Second, "ShardResumed events for shards 0 and 1", func() bool {
		evs, _, err := lifecycle.Read(ctx, rdb, ks, "", 1000)
		if err != nil {
			t.Fatal(err)
		}
		resumed := map[int]bool{}
		for _, ev := range evs {
			if ev.Type == lifecycle.ShardResumed {
				resumed[ev.Shard] = true
			}
		}
		return resumed[0] && resumed[1]
	})
	// The resumed process never saw READY's guild list; the count stays.
	testwait.For(t, 5*time.Second, "shard statuses ready after resuming", func() bool {
		for shard := range 2 {
			st := rdb.HGetAll(ctx, ks.ShardStatus(shard)).Val()
			if st["status"] != "ready" || st["guilds"] != "2" {
				return false
			}
		}
		return true
	})
	if err := p2.stop(syscall.SIGTERM, 15*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestCrashRestartResumes SIGKILLs a cluster and starts it again: the shards
// RESUME from the last saved sequence, nothing is lost, and the only events
// handled twice are those handled after the last save before the crash.
func TestCrashRestartResumes(t *testing.T) { testredis.EachBackend(t, testCrashRestartResumes) }

func testCrashRestartResumes(t *testing.T) {
	t.Parallel()
	rdb, url, ks := realRedis(t)
	srv := newFake(t, discordtest.Options{
		Shards: 2, MaxConcurrency: 2, HeartbeatInterval: time.Second,
		World: discordtest.WorldOptions{Guilds: 4},
	})
	// A long sync interval makes the unsaved window obvious.
	cfg := procConfig{ns: ks.Namespace(), shards: "0,1", shardCount: 2, maxConc: 2, redisURL: url, srv: srv, syncMS: 3000}
	ctx := context.Background()

	p1 := startProc(t, "first", cfg)
	p1.waitReady(20 * time.Second)
	saved := sendBatch(t, srv, "saved", 6)
	testwait.For(t, 10*time.Second, "replies to the first batch", allReplied(srv, saved))
	// Wait until the cluster has stored every handled sequence.
	testwait.For(t, 10*time.Second, "sequences saved", func() bool {
		states, err := sessions.Load(ctx, rdb, ks, []int{0, 1})
		if err != nil {
			return false
		}
		for shard := range 2 {
			st, _ := srv.ShardStatus(shard)
			if states[shard].Sequence != st.Seq {
				return false
			}
		}
		return true
	})

	unsaved := sendBatch(t, srv, "unsaved", 6)
	testwait.For(t, 10*time.Second, "replies to the second batch", allReplied(srv, unsaved))
	_ = p1.stop(syscall.SIGKILL, 10*time.Second)

	identifies := len(srv.Identifies())
	resumes := len(srv.Resumes())
	down := sendBatch(t, srv, "down", 6)

	p2 := startProc(t, "second", cfg)
	p2.waitReady(20 * time.Second)
	testwait.For(t, 10*time.Second, "replies to what was sent while down", allReplied(srv, down))

	if got := len(srv.Identifies()); got != identifies {
		t.Fatalf("restart after a crash identified %d times; want resumes only", got-identifies)
	}
	for _, r := range srv.Resumes()[resumes:] {
		if !r.OK {
			t.Fatalf("resume failed: %+v", r)
		}
	}
	got := replies(srv)
	dups := 0
	for _, c := range saved {
		if got[c] != 1 {
			t.Errorf("%q (saved before the crash) handled %d times, want once", c, got[c])
		}
	}
	for _, c := range unsaved {
		if got[c] == 0 {
			t.Errorf("%q lost", c)
		}
		dups += got[c] - 1
	}
	for _, c := range down {
		if got[c] != 1 {
			t.Errorf("%q (sent while down) handled %d times, want once", c, got[c])
		}
	}
	t.Logf("after SIGKILL: %d of %d unsaved events replayed", dups, len(unsaved))
	if err := p2.stop(syscall.SIGTERM, 15*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestShardReconnectsInProcess drops one shard's connection and invalidates
// another's session while the cluster runs: the first RESUMEs without losing
// the events sent meanwhile, the second IDENTIFYs again and its new session
// replaces the old one in Redis; both transitions are in the lifecycle
// stream.
func TestShardReconnectsInProcess(t *testing.T) {
	t.Parallel()
	rdb, url, ks := realRedis(t)
	srv := newFake(t, discordtest.Options{
		Shards: 2, MaxConcurrency: 2, HeartbeatInterval: time.Second, IdentifyWindow: time.Second,
		World: discordtest.WorldOptions{Guilds: 4},
	})
	cfg := procConfig{ns: ks.Namespace(), shards: "0,1", shardCount: 2, maxConc: 2, windowMS: 1000, redisURL: url, srv: srv}
	ctx := context.Background()

	p := startProc(t, "cluster", cfg)
	p.waitReady(20 * time.Second)
	identifies := len(srv.Identifies())

	if err := srv.DropShard(0); err != nil {
		t.Fatal(err)
	}
	during := sendBatch(t, srv, "dropped", 6)
	testwait.For(t, 15*time.Second, "replies after the drop", allReplied(srv, during))

	old, _ := srv.ShardStatus(1)
	if err := srv.InvalidateSession(1, false); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 15*time.Second, "shard 1 re-identified and its new session saved", func() bool {
		st, _ := srv.ShardStatus(1)
		if st.SessionID == old.SessionID || !st.Ready {
			return false
		}
		saved, err := sessions.Load(ctx, rdb, ks, []int{1})
		return err == nil && saved[1].SessionID == st.SessionID
	})
	if got := len(srv.Identifies()) - identifies; got != 1 {
		t.Fatalf("%d identifies after the faults, want 1 (shard 1 only)", got)
	}
	got := replies(srv)
	for _, c := range during {
		if got[c] != 1 {
			t.Errorf("%q handled %d times, want once", c, got[c])
		}
	}

	type key struct {
		typ   lifecycle.Type
		shard int
	}
	testwait.For(t, 10*time.Second, "lifecycle events of both faults", func() bool {
		evs, _, err := lifecycle.Read(ctx, rdb, ks, "", 1000)
		if err != nil {
			return false
		}
		seen := map[key]int{}
		for _, ev := range evs {
			seen[key{ev.Type, ev.Shard}]++
		}
		return seen[key{lifecycle.ShardDisconnected, 0}] >= 1 && seen[key{lifecycle.ShardResumed, 0}] >= 1 &&
			seen[key{lifecycle.ShardDisconnected, 1}] >= 1 && seen[key{lifecycle.ShardReady, 1}] >= 2
	})
	for shard := range 2 {
		st := rdb.HGetAll(ctx, ks.ShardStatus(shard)).Val()
		if st["status"] != "ready" || st["cluster"] != "0" || st["latency_ms"] == "" || st["guilds"] != "2" {
			t.Errorf("shard %d status hash %v", shard, st)
		}
	}
	if err := p.stop(syscall.SIGTERM, 15*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestStopWhileIdentifying stops a cluster whose shards are still waiting
// for identify buckets: it exits promptly and resumably, and the restarted
// cluster resumes the shards that were ready while the rest identify,
// without an identify-concurrency violation.
func TestStopWhileIdentifying(t *testing.T) {
	t.Parallel()
	rdb, url, ks := realRedis(t)
	srv := newFake(t, discordtest.Options{
		Shards: 4, MaxConcurrency: 1, IdentifyWindow: time.Second,
		World: discordtest.WorldOptions{Guilds: 8},
	})
	cfg := procConfig{ns: ks.Namespace(), shards: "0,1,2,3", shardCount: 4, maxConc: 1, windowMS: 1000, redisURL: url, srv: srv}
	ctx := context.Background()

	p1 := startProc(t, "first", cfg)
	var first int
	testwait.For(t, 20*time.Second, "the first shard ready and saved", func() bool {
		ids := srv.Identifies()
		if len(ids) == 0 {
			return false
		}
		first = ids[0].Shard
		saved, err := sessions.Load(ctx, rdb, ks, []int{first})
		return err == nil && saved[first].SessionID == ids[0].SessionID
	})
	start := time.Now()
	if err := p1.stop(syscall.SIGTERM, 10*time.Second); err != nil {
		t.Fatalf("stop while identifying: %v (errors %v)", err, p1.errors())
	}
	t.Logf("stopped %s after SIGTERM with %d of 4 shards identified", time.Since(start).Round(time.Millisecond), len(srv.Identifies()))
	if p1.count("ready") != 0 {
		t.Fatal("cluster reported ready with shards still waiting")
	}
	saved, err := sessions.Load(ctx, rdb, ks, []int{0, 1, 2, 3})
	if err != nil {
		t.Fatal(err)
	}
	resumes := len(srv.Resumes())

	p2 := startProc(t, "second", cfg)
	p2.waitReady(30 * time.Second)
	resumed := map[int]bool{}
	for _, r := range srv.Resumes()[resumes:] {
		if r.OK {
			resumed[r.Shard] = true
		}
	}
	for shard := range saved {
		if !resumed[shard] {
			t.Errorf("shard %d had a saved session but did not resume", shard)
		}
	}
	if !resumed[first] {
		t.Errorf("the first ready shard %d did not resume", first)
	}
	if v := srv.Violations(); len(v) != 0 {
		t.Fatalf("identify-concurrency violations across the restart: %+v", v)
	}
	if err := p2.stop(syscall.SIGTERM, 15*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestSessionOfOtherShardCountIsNotResumed seeds a session saved under
// another shard count: resuming it would bring back the old layout, so the
// cluster identifies that shard and replaces the session.
func TestSessionOfOtherShardCountIsNotResumed(t *testing.T) {
	t.Parallel()
	rdb, url, ks := realRedis(t)
	srv := newFake(t, discordtest.Options{Shards: 2, MaxConcurrency: 2, World: discordtest.WorldOptions{Guilds: 4}})
	ctx := context.Background()
	stale := sessions.State{SessionID: "0123456789abcdef0123456789abcdef", Sequence: 50, ResumeURL: srv.ResumeURL(), ShardCount: 4}
	if err := sessions.Save(ctx, rdb, ks, 0, stale); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, "cluster", procConfig{ns: ks.Namespace(), shards: "0,1", shardCount: 2, maxConc: 2, redisURL: url, srv: srv})
	p.waitReady(20 * time.Second)
	if n := len(srv.Resumes()); n != 0 {
		t.Fatalf("%d resume attempts with a session of another shard count", n)
	}
	if n := len(srv.Identifies()); n != 2 {
		t.Fatalf("%d identifies, want 2", n)
	}
	// READY's session is saved by the cluster's writer: wait for it.
	testwait.Problems(t, 10*time.Second, "shard 0's session of READY saved", func() []string {
		saved, err := sessions.Load(ctx, rdb, ks, []int{0})
		if err != nil {
			t.Fatal(err)
		}
		if s := saved[0]; s.SessionID != stale.SessionID && s.ShardCount == 2 {
			return nil
		}
		return []string{fmt.Sprintf("shard 0 session: %+v", saved[0])}
	})
	if err := p.stop(syscall.SIGTERM, 15*time.Second); err != nil {
		t.Fatal(err)
	}
}
