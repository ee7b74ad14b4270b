package launcher

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/disgoorg/snowflake/v2"

	"github.com/megane-go/megane/discordtest"
	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/internal/testwait"
	"github.com/megane-go/megane/lifecycle"
	"github.com/megane-go/megane/redisipc"
	"github.com/megane-go/megane/sessions"
	"github.com/megane-go/megane/stats"
)

// TestFleet runs one bot of 3 clusters × 4 shards through the life of a
// deployment, in order: cold start, a cluster killed, a cluster restarted on
// request, a cluster hung, the launcher stopped, and a full restart.
func TestFleet(t *testing.T) { testredis.EachBackend(t, testFleet) }

func testFleet(t *testing.T) {
	f := newFleet(t, fleetOptions{shards: 12, clusters: 3, maxConcurrency: 16, env: []string{"TESTBOT_SERVICE=1"}})
	f.start()
	var st Status

	t.Run("ColdStartAllReady", func(t *testing.T) {
		start := time.Now()
		st = f.waitAllReady(60 * time.Second)
		t.Logf("cold start to all ready: %s", time.Since(start).Round(time.Millisecond))
		if !f.srv.ShardsReady(12) {
			t.Errorf("the fake does not see all 12 shards ready")
		}
		ident, _ := f.shardActivity()
		for s := range 12 {
			if ident[s] != 1 {
				t.Errorf("shard %d identified %d times, want 1", s, ident[s])
			}
		}
		if v := f.srv.Violations(); len(v) > 0 {
			t.Errorf("identify violations: %+v", v)
		}
		for i, c := range st.Clusters {
			if want := []int{4 * i, 4*i + 1, 4*i + 2, 4*i + 3}; !equalInts(c.Shards, want) {
				t.Errorf("cluster %d shards %v, want %v", i, c.Shards, want)
			}
		}
		m, err := f.rdb.HGetAll(context.Background(), f.ks.ShardMap()).Result()
		if err != nil || m["shard_count"] != "12" || m["clusters"] != "3" || m["7"] != "1" {
			t.Errorf("shard map %v (%v)", m, err)
		}
		testwait.For(t, 5*time.Second, "the AllClustersReady event", func() bool {
			return countEvents(f.events(), lifecycle.AllClustersReady, -1) > 0
		})
		if !f.logContains("all clusters ready") {
			t.Errorf("the log lacks the line \"all clusters ready\"")
		}
		testwait.For(t, 10*time.Second, "service echo ready", func() bool {
			st, err := f.status()
			return err == nil && len(st.Services) == 1 && st.Services[0].State == StateReady
		})
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		out, err := f.node.Call(ctx, redisipc.ServiceAddr("echo"), "say", []byte(`"hi"`))
		if err != nil || string(out) != `"hi"` {
			t.Errorf("service echo answered %q, %v", out, err)
		}
		ids := f.say(f.srv.World().Guilds)
		f.waitSeen(ids, 10*time.Second)
		for _, line := range []string{
			"testbot event: cluster_spawned cluster=2 shard=-1",
			"testbot event: cluster_ready cluster=1 shard=-1",
			"testbot event: shard_ready cluster=2 shard=11",
			"testbot event: all_clusters_ready cluster=-1 shard=-1",
			`testbot event: service_ready cluster=-1 shard=-1 service="echo"`,
		} {
			if !f.logContains(line) {
				t.Errorf("OnEvent was not called with %q", line)
			}
		}
	})
	if t.Failed() {
		t.FailNow()
	}

	// downtime checks that cluster c comes back with every shard resumed and
	// no identify, that messages dispatched while it was down reach the bot
	// exactly once, and that no other shard reconnected.
	downtime := func(t *testing.T, c int, stop func(pid int) func()) {
		t.Helper()
		before := f.waitAllReady(10 * time.Second)
		shards := before.Clusters[c].Shards
		oldPID := before.Clusters[c].PID
		identBefore, resBefore := f.shardActivity()
		othersBefore, err := sessions.Load(context.Background(), f.rdb, f.ks, others(12, shards))
		if err != nil {
			t.Fatal(err)
		}

		wait := stop(oldPID)
		ids := f.say(f.guildsOf(shards)) // the cluster is down or going down
		wait()
		var after Status
		testwait.For(t, 30*time.Second, "a new process of the cluster, and every cluster ready", func() bool {
			after = f.waitAllReady(30 * time.Second)
			return after.Clusters[c].PID != oldPID
		})
		f.waitSeen(ids, 15*time.Second)

		identAfter, resAfter := f.shardActivity()
		for s := range 12 {
			if identAfter[s] != identBefore[s] {
				t.Errorf("shard %d identified again (%d → %d)", s, identBefore[s], identAfter[s])
			}
			switch {
			case contains(shards, s) && resAfter[s] != resBefore[s]+1:
				t.Errorf("shard %d of cluster %d: %d resumes, want 1", s, c, resAfter[s]-resBefore[s])
			case !contains(shards, s) && resAfter[s] != resBefore[s]:
				t.Errorf("shard %d of another cluster reconnected", s)
			}
		}
		for i, cs := range after.Clusters {
			if i != c && cs.PID != before.Clusters[i].PID {
				t.Errorf("cluster %d was touched: pid %d → %d", i, before.Clusters[i].PID, cs.PID)
			}
		}
		othersAfter, err := sessions.Load(context.Background(), f.rdb, f.ks, others(12, shards))
		if err != nil {
			t.Fatal(err)
		}
		for s, b := range othersBefore {
			if othersAfter[s].SessionID != b.SessionID {
				t.Errorf("shard %d of another cluster changed session", s)
			}
		}
		seen := f.seen()
		for _, id := range ids {
			if seen[id] != 1 {
				t.Errorf("message %d sent during the downtime was handled %d times, want exactly 1", id, seen[id])
				for _, m := range f.srv.Messages() {
					if m.Content == "seen:"+id.String() {
						t.Logf("  answered at %s in channel %d", m.At.Format("15:04:05.000"), m.ChannelID)
					}
				}
				for _, r := range f.srv.Resumes() {
					t.Logf("  resume %+v", r)
				}
			}
		}
		st := f.srv.Stats()
		t.Logf("identifies %d, resumes %d (%d failed); duplicate answers among all %d messages so far: %d",
			st.Identifies, st.Resumes, st.ResumeFailures, len(seen), duplicates(seen))
	}

	t.Run("SIGKILLedClusterResumes", func(t *testing.T) {
		downtime(t, 1, func(pid int) func() {
			if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			// Like SIGSTOP, SIGKILL takes effect a little after kill returns.
			testwait.For(t, 5*time.Second, "the cluster process gone", func() bool { return !f.ours(pid) })
			return func() {}
		})
		// The launcher publishes its events through a queue: wait for them.
		testwait.For(t, 10*time.Second, "one ClusterRestarted and one ClusterExited event for cluster 1", func() bool {
			evs := f.events()
			return countEvents(evs, lifecycle.ClusterRestarted, 1) == 1 && countEvents(evs, lifecycle.ClusterExited, 1) == 1
		})
	})

	t.Run("RequestedRestartResumes", func(t *testing.T) {
		done := make(chan error, 1)
		downtime(t, 2, func(pid int) func() {
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				var cs ClusterStatus
				done <- f.node.CallJSON(ctx, LauncherAddr, OpRestartCluster, RestartClusterRequest{Cluster: 2}, &cs)
			}()
			// Dispatch once the old process is on its way out.
			testwait.For(t, 10*time.Second, "cluster 2 to stop", func() bool {
				return syscall.Kill(pid, 0) != nil || f.supervisorState(2) != string(StateReady)
			})
			return func() {
				if err := <-done; err != nil {
					t.Fatalf("restart-cluster over IPC: %v", err)
				}
			}
		})
	})

	t.Run("HungClusterReplaced", func(t *testing.T) {
		downtime(t, 0, func(pid int) func() {
			if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
				t.Fatal(err)
			}
			// kill returns before every thread has stopped; until then the
			// process may still handle an event.
			testwait.For(t, 5*time.Second, "every thread of the cluster stopped", func() bool { return allThreadsStopped(pid) })
			return func() {
				testwait.For(t, 15*time.Second, "cluster 0 declared unresponsive", func() bool {
					return countEvents(f.events(), lifecycle.ClusterUnresponsive, 0) == 1
				})
			}
		})
	})

	t.Run("HungServiceReplaced", func(t *testing.T) {
		st, err := f.status()
		if err != nil || len(st.Services) != 1 || st.Services[0].PID == 0 {
			t.Fatalf("status %+v, %v", st.Services, err)
		}
		pid := st.Services[0].PID
		if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
			t.Fatal(err)
		}
		testwait.For(t, 5*time.Second, "every thread of the service stopped", func() bool { return allThreadsStopped(pid) })
		testwait.For(t, 20*time.Second, "a new copy of the frozen service ready", func() bool {
			st, err := f.status()
			return err == nil && st.Services[0].State == StateReady && st.Services[0].PID != 0 && st.Services[0].PID != pid
		})
		if f.ours(pid) {
			t.Errorf("the frozen service %d still runs", pid)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if out, err := f.node.Call(ctx, redisipc.ServiceAddr("echo"), "say", []byte(`"again"`)); err != nil || string(out) != `"again"` {
			t.Errorf("the new copy answered %q, %v", out, err)
		}
	})

	t.Run("RollingRestartOneAtATime", func(t *testing.T) {
		f.waitAllReady(10 * time.Second)
		identBefore, resBefore := f.shardActivity()
		from := len(f.events())
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		var st Status
		if err := f.node.CallJSON(ctx, LauncherAddr, OpRollingRestart, nil, &st); err != nil {
			t.Fatalf("rolling-restart over IPC: %v", err)
		}
		identAfter, resAfter := f.shardActivity()
		for s := range 12 {
			if identAfter[s] != identBefore[s] || resAfter[s] != resBefore[s]+1 {
				t.Errorf("shard %d: %d identifies and %d resumes, want 0 and 1",
					s, identAfter[s]-identBefore[s], resAfter[s]-resBefore[s])
			}
		}
		oneDownAtATime(t, f.events()[from:])
	})

	t.Run("AllClustersReadyFiredOnce", func(t *testing.T) {
		if n := countEvents(f.events(), lifecycle.AllClustersReady, -1); n != 1 {
			t.Errorf("AllClustersReady fired %d times, want once", n)
		}
	})

	t.Run("StatisticsPublished", func(t *testing.T) {
		testwait.Problems(t, 10*time.Second, "complete statistics", func() []string {
			reports, err := stats.ReadAll(context.Background(), f.rdb, f.ks, 0)
			if err != nil {
				t.Fatal(err)
			}
			byName := map[string]map[string]any{}
			for _, r := range reports {
				byName[r.Name] = r.Fields
			}
			l, c0 := byName["launcher"], byName["cluster:0"]
			if l["clusters"] == int64(3) && l["clusters_ready"] == int64(3) && c0["shards"] != nil {
				return nil
			}
			return []string{fmt.Sprintf("launcher %v, cluster:0 %v", l, c0)}
		})
	})

	t.Run("StatusWebhookPosted", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		var posted string
		err := f.srv.WaitFor(ctx, func(s *discordtest.Server) bool {
			posted = ""
			for _, m := range s.Messages() {
				if m.WebhookID == 1 {
					posted += m.Content + "\n"
				}
			}
			return strings.Contains(posted, "all_clusters_ready") && strings.Contains(posted, "cluster_exited") &&
				strings.Contains(posted, "cluster_restarted")
		})
		if err != nil {
			t.Fatalf("status channel did not get the fleet's events: %v\n%s", err, posted)
		}
	})

	var stoppedAt time.Time
	t.Run("SIGTERMStopsEverything", func(t *testing.T) {
		children := f.childPIDs()
		stoppedAt = time.Now()
		if err := f.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-f.exited:
		case <-time.After(20 * time.Second):
			t.Fatal("launcher still running 20 s after SIGTERM")
		}
		t.Logf("launcher stopped in %s", time.Since(stoppedAt).Round(time.Millisecond))
		if code := f.cmd.ProcessState.ExitCode(); code != 0 {
			t.Errorf("launcher exit code %d", code)
		}
		for _, pid := range children {
			if f.ours(pid) {
				t.Errorf("child %d still running", pid)
			}
		}
		states, err := sessions.Load(context.Background(), f.rdb, f.ks, allShards(12))
		if err != nil {
			t.Fatal(err)
		}
		for s := range 12 {
			// Saved at stop: the fake's newest session of the shard, at the
			// very sequence it last dispatched.
			fake, _ := f.srv.ShardStatus(s)
			if st, ok := states[s]; !ok || st.SessionID != fake.SessionID || st.Sequence != fake.Seq {
				t.Errorf("shard %d: saved session %+v, the fake's is %s at seq %d", s, st, fake.SessionID, fake.Seq)
			}
		}
		if v, _ := f.rdb.HGet(context.Background(), f.ks.Launcher(), "status").Result(); v != "stopped" {
			t.Errorf("launcher status %q, want stopped", v)
		}
	})

	t.Run("FullRestartResumesEveryShard", func(t *testing.T) {
		identBefore, resBefore := f.shardActivity()
		ids := f.say(f.srv.World().Guilds) // while nothing runs
		f.start()
		f.waitAllReady(60 * time.Second)
		f.waitSeen(ids, 15*time.Second)
		identAfter, resAfter := f.shardActivity()
		for s := range 12 {
			if identAfter[s] != identBefore[s] || resAfter[s] != resBefore[s]+1 {
				t.Errorf("shard %d: %d identifies and %d resumes, want 0 and 1",
					s, identAfter[s]-identBefore[s], resAfter[s]-resBefore[s])
			}
		}
		seen := f.seen()
		for _, id := range ids {
			if seen[id] != 1 {
				t.Errorf("message %d sent while the bot was down was handled %d times, want 1", id, seen[id])
			}
		}
	})
}

// allThreadsStopped reports whether every thread of pid is in state T.
func allThreadsStopped(pid int) bool {
	dir := "/proc/" + strconv.Itoa(pid) + "/task"
	tasks, err := os.ReadDir(dir)
	if err != nil || len(tasks) == 0 {
		return false
	}
	for _, task := range tasks {
		st, err := os.ReadFile(dir + "/" + task.Name() + "/stat")
		if err != nil {
			return false
		}
		_, rest, _ := strings.Cut(string(st), ") ")
		if !strings.HasPrefix(rest, "T") {
			return false
		}
	}
	return true
}

func (f *fleet) supervisorState(c int) string {
	v, _ := f.rdb.HGet(context.Background(), f.ks.Cluster(c), "supervisor").Result()
	return v
}

func others(n int, mine []int) []int {
	var out []int
	for s := range n {
		if !contains(mine, s) {
			out = append(out, s)
		}
	}
	return out
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func duplicates(seen map[snowflake.ID]int) int {
	n := 0
	for _, c := range seen {
		if c > 1 {
			n += c - 1
		}
	}
	return n
}

// TestCrashAtStartGivesUp: a cluster whose Launch fails is respawned with a
// growing backoff, then given up on with a clear report; the others run.
func TestCrashAtStartGivesUp(t *testing.T) {
	f := newFleet(t, fleetOptions{shards: 2, clusters: 2, maxConcurrency: 16, env: []string{
		"TESTBOT_CRASH_CLUSTER=1", "MEGANE_MAX_RESTARTS=2", "MEGANE_RESTART_BACKOFF=200ms", "MEGANE_RESTART_WINDOW=1m",
	}})
	f.start()
	testwait.For(t, 30*time.Second, "cluster 1 given up", func() bool {
		return countEvents(f.events(), lifecycle.ClusterGaveUp, 1) == 1
	})
	evs := f.events()
	var spawns, exits []time.Time
	for _, ev := range evs {
		switch {
		case ev.Cluster != 1:
		case ev.Type == lifecycle.ClusterSpawned:
			spawns = append(spawns, ev.At)
		case ev.Type == lifecycle.ClusterExited:
			exits = append(exits, ev.At)
		case ev.Type == lifecycle.ClusterGaveUp:
			if !strings.Contains(ev.Detail, "gave up after 3 crashes") || !strings.Contains(ev.Detail, "exit status 1") {
				t.Errorf("gave-up detail %q", ev.Detail)
			}
		}
	}
	if len(spawns) != 3 || len(exits) != 3 {
		t.Fatalf("cluster 1: %d spawns and %d exits, want 3 and 3 (max restarts 2)", len(spawns), len(exits))
	}
	for i, want := range []time.Duration{200 * time.Millisecond, 400 * time.Millisecond} {
		// Event times have millisecond resolution.
		if gap := spawns[i+1].Sub(exits[i]); gap < want-2*time.Millisecond {
			t.Errorf("respawn %d after %s, want a backoff of at least %s", i+1, gap, want)
		}
	}
	if !f.logContains("cluster 1 GAVE UP") {
		t.Errorf("the log does not report the give-up loudly")
	}
	var st Status
	testwait.For(t, 20*time.Second, "cluster 0 ready", func() bool {
		var err error
		st, err = f.status()
		return err == nil && st.Clusters[0].State == StateReady
	})
	if st.Clusters[1].State != StateGaveUp || st.Clusters[0].State != StateReady || st.AllReady {
		t.Errorf("status %+v", st)
	}
	// A restart on request revives it; it fails again, and says so.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err := f.node.Call(ctx, LauncherAddr, OpRestartCluster, []byte(`{"cluster":1}`))
	if err == nil || !strings.Contains(err.Error(), "did not become ready") {
		t.Errorf("restart of a crashing cluster: %v", err)
	}
}

// TestIdentifyConcurrencyAcrossProcesses: several cluster processes share
// the identify buckets through Redis, so the fake sees no violation.
func TestIdentifyConcurrencyAcrossProcesses(t *testing.T) {
	testredis.EachBackend(t, testIdentifyConcurrencyAcrossProcesses)
}

func testIdentifyConcurrencyAcrossProcesses(t *testing.T) {
	for _, mc := range []int{1, 2} {
		t.Run("max_concurrency="+strconv.Itoa(mc), func(t *testing.T) {
			window := 400 * time.Millisecond
			f := newFleet(t, fleetOptions{shards: 4, clusters: 2, maxConcurrency: mc, identifyWindow: window})
			f.start()
			f.waitAllReady(30 * time.Second)
			if v := f.srv.Violations(); len(v) > 0 {
				t.Errorf("%d identify violations: %+v", len(v), v)
			}
			if n := len(f.srv.Identifies()); n != 4 {
				t.Errorf("%d identifies, want 4", n)
			}
			if v, _ := f.rdb.HGet(context.Background(), f.ks.Gateway(), "max_concurrency").Result(); v != strconv.Itoa(mc) {
				t.Errorf("gateway max_concurrency in Redis %q, want %d", v, mc)
			}
		})
	}
}

// TestSessionBudgetRefusesStart: with too few session starts left, the
// launcher refuses before spawning anything.
func TestSessionBudgetRefusesStart(t *testing.T) {
	testredis.EachBackend(t, testSessionBudgetRefusesStart)
}

func testSessionBudgetRefusesStart(t *testing.T) {
	f := newFleet(t, fleetOptions{shards: 4, clusters: 2, maxConcurrency: 16, env: []string{"MEGANE_IDENTIFY_RESERVE=998"}})
	f.start()
	select {
	case <-f.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("launcher did not refuse")
	}
	if f.cmd.ProcessState.ExitCode() == 0 {
		t.Errorf("launcher exited 0")
	}
	if !f.logContains("session start limit") {
		t.Errorf("the log does not say why")
	}
	if n := countEvents(f.events(), lifecycle.ClusterSpawned, -1); n != 0 {
		t.Errorf("%d clusters spawned", n)
	}
	if n := len(f.srv.Identifies()); n != 0 {
		t.Errorf("%d identifies", n)
	}
}

// TestBadConfigFailsBeforeStarting: the launcher names every bad variable
// and touches nothing.
func TestBadConfigFailsBeforeStarting(t *testing.T) {
	f := newFleet(t, fleetOptions{shards: 2, clusters: 1, maxConcurrency: 1, env: []string{
		"MEGANE_CLUSTERS=three", "MEGANE_HEARTBEAT_INTERVAL=5",
	}})
	f.start()
	select {
	case <-f.exited:
	case <-time.After(20 * time.Second):
		t.Fatal("launcher did not fail")
	}
	b, _ := os.ReadFile(f.log)
	for _, want := range []string{"MEGANE_CLUSTERS=\"three\" is not an integer", "MEGANE_HEARTBEAT_INTERVAL=\"5\" is not a duration"} {
		if !strings.Contains(string(b), want) {
			t.Errorf("output lacks %q:\n%s", want, b)
		}
	}
	if n, _ := f.rdb.Exists(context.Background(), f.ks.Launcher(), f.ks.ShardMap()).Result(); n != 0 {
		t.Errorf("keys were written")
	}
}

// TestKilledLauncherTakesChildrenAlong: when the launcher dies without a
// chance to stop anything (SIGKILL), the kernel sends its children SIGTERM
// (Pdeathsig): they save their sessions and exit instead of living on.
func TestKilledLauncherTakesChildrenAlong(t *testing.T) {
	f := newFleet(t, fleetOptions{shards: 2, clusters: 2, maxConcurrency: 16})
	f.start()
	f.waitAllReady(30 * time.Second)
	children := f.childPIDs()
	if len(children) != 2 {
		t.Fatalf("children %v", children)
	}
	if err := f.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 15*time.Second, "the orphaned clusters to exit", func() bool {
		for _, pid := range children {
			if f.ours(pid) {
				return false
			}
		}
		return true
	})
	states, err := sessions.Load(context.Background(), f.rdb, f.ks, allShards(2))
	if err != nil {
		t.Fatal(err)
	}
	// The saved sequence is the last one the cluster read: the fake may have
	// sent more that were still in the socket when SIGTERM came, which a
	// RESUME replays. A sequence past the fake's, or another session, would
	// be wrong.
	for s := range 2 {
		fake, _ := f.srv.ShardStatus(s)
		if st, ok := states[s]; !ok || st.SessionID != fake.SessionID || st.Sequence < 1 || st.Sequence > fake.Seq {
			t.Errorf("shard %d: saved session %+v, the fake's is %s at seq %d", s, st, fake.SessionID, fake.Seq)
		}
	}
}
