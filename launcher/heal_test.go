package launcher

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/megane-go/megane/cache"
	"github.com/megane-go/megane/inspect"
	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/internal/testwait"
	"github.com/megane-go/megane/redisipc"
)

// healEnv runs the bot with short heartbeats, so a Redis outage of a few
// seconds lasts many heartbeat TTLs (600 ms), and gives up on a child after
// its second crash, so a respawn that counted would show.
var healEnv = []string{
	"TESTBOT_SERVICE=1",
	"MEGANE_HEARTBEAT_INTERVAL=200ms",
	"MEGANE_MAX_RESTARTS=1",
	"MEGANE_RESTART_WINDOW=5m",
}

// healShards and healClusters shape the bots of the self-healing tests.
const healShards, healClusters = 4, 2

// missing returns what a user or megane-cli would find missing or wrong
// in Redis, or "" when the bot is whole again: the launcher, gateway and
// cluster hashes, the shard map, every shard ready with a resumable
// session, the live IPC nodes and the service's consumer group, and a
// cache projection holding every guild.
func (f *fleet) missing(ctx context.Context) string {
	rdb, ks := f.rdb, f.ks
	if n, err := rdb.Exists(ctx, ks.Launcher(), ks.Gateway()).Result(); err != nil || n != 2 {
		return fmt.Sprintf("launcher and gateway hashes (%d of 2, %v)", n, err)
	}
	if ns, err := inspect.Namespaces(ctx, rdb); err != nil || !slices.Contains(ns, ks.Namespace()) {
		return fmt.Sprintf("the namespace in megane-cli's list %v (%v)", ns, err)
	}
	ov, err := inspect.New(rdb, ks).Overview(ctx)
	if err != nil {
		return "the overview: " + err.Error()
	}
	if ov.ShardCount != healShards || len(ov.Shards) != healShards || len(ov.Clusters) != healClusters {
		return fmt.Sprintf("status: %d shards of %d, %d clusters", len(ov.Shards), ov.ShardCount, len(ov.Clusters))
	}
	for _, s := range ov.Shards {
		if s.Status != "ready" || !s.Session.Complete() {
			return fmt.Sprintf("shard %d: status %q, session %+v", s.ID, s.Status, s.Session)
		}
		if n, _ := rdb.Exists(ctx, ks.ShardProjected(s.ID)).Result(); n != 1 {
			return fmt.Sprintf("shard %d's projection mark", s.ID)
		}
	}
	for _, c := range ov.Clusters {
		if !c.Alive || c.Fields["host"] == "" || c.Fields["supervisor"] != string(StateReady) || c.Status != "ready" {
			return fmt.Sprintf("cluster %d: alive %v, fields %v", c.ID, c.Alive, c.Fields)
		}
	}
	addrs := map[string]bool{}
	for _, n := range ov.Nodes {
		addrs[n.Addr] = true
	}
	for _, a := range []string{LauncherAddr, "cluster:0", "cluster:1", redisipc.ServiceAddr("echo")} {
		if !addrs[a] {
			return "the IPC registration of " + a
		}
	}
	groups, err := rdb.XInfoGroups(ctx, ks.Inbox(redisipc.ServiceAddr("echo"))).Result()
	if err != nil || len(groups) != 1 {
		return fmt.Sprintf("the service's consumer group (%v)", err)
	}
	counts, err := cache.NewReader(rdb, ks).TotalCounts(ctx)
	if want := len(f.srv.World().Guilds); err != nil || counts.Guilds != int64(want) || counts.Unavailable != 0 {
		return fmt.Sprintf("cache counts %+v, want %d guilds (%v)", counts, want, err)
	}
	if schema, err := cache.NewReader(rdb, ks).Schema(ctx); err != nil || len(schema) == 0 {
		return fmt.Sprintf("the cache schema (%v)", err)
	}
	return ""
}

// pids returns the pids of the clusters and of the service copy.
func (f *fleet) pids(st Status) []int {
	var out []int
	for _, c := range st.Clusters {
		out = append(out, c.PID)
	}
	for _, s := range st.Services {
		out = append(out, s.PID)
	}
	return out
}

// waitWhole waits until the bot is whole again: every record back, every
// cluster and the service ready, the service answering. It returns the
// status and how long that took.
func (f *fleet) waitWhole(t *testing.T, timeout time.Duration) (Status, time.Duration) {
	t.Helper()
	start := time.Now()
	var st Status
	last := ""
	whole := func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		if last = f.missing(ctx); last != "" {
			return false
		}
		var err error
		if st, err = f.status(); err != nil {
			last = "the launcher's status: " + err.Error()
			return false
		}
		for _, p := range append(clusterStates(st), serviceStates(st)...) {
			if p != StateReady {
				last = fmt.Sprintf("supervision states %v %v", clusterStates(st), serviceStates(st))
				return false
			}
		}
		out, err := f.node.Call(ctx, redisipc.ServiceAddr("echo"), "say", []byte(`"back"`))
		if err != nil || string(out) != `"back"` {
			last = fmt.Sprintf("the service's answer %q (%v)", out, err)
			return false
		}
		return true
	}
	testwait.Problems(t, timeout, "the bot whole again", func() []string {
		if whole() {
			return nil
		}
		return []string{"still missing " + last}
	})
	return st, time.Since(start)
}

func clusterStates(st Status) []State {
	var out []State
	for _, c := range st.Clusters {
		out = append(out, c.State)
	}
	return out
}

func serviceStates(st Status) []State {
	var out []State
	for _, s := range st.Services {
		out = append(out, s.State)
	}
	return out
}

// noChildJudged fails t when the launcher killed a child or gave up on one,
// as OnEvent and the log tell (the events stream cannot: Redis refused it).
func (f *fleet) noChildJudged(t *testing.T) {
	t.Helper()
	for _, bad := range []string{"is unresponsive", "GAVE UP", "cluster_unresponsive", "cluster_gave_up",
		"testbot event: cluster_exited"} {
		if f.logContains(bad) {
			t.Errorf("the launcher log contains %q", bad)
		}
	}
}

// TestRedisRefusingWritesKillsNothing: Redis out of memory under
// noeviction refuses every write for many heartbeat TTLs. Reads still work,
// so the launcher sees every heartbeat key expire; it must kill nothing,
// since Redis, not the children, is failing. A service killed meanwhile
// cannot start (its registration is refused: exit status 75); it is not
// counted as a crash and comes back once Redis takes writes again, as does
// everything else.
func TestRedisRefusingWritesKillsNothing(t *testing.T) {
	srv := testredis.StartServer(t, testredis.ServerOptions{})
	f := newFleet(t, fleetOptions{shards: healShards, clusters: healClusters, maxConcurrency: 16, redis: srv, env: healEnv})
	f.start()
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("supervision log:\n%s", f.logLines("service", "Redis", "spawned", "exited", "level=ERROR"))
		}
	})
	before, took := f.waitWhole(t, 60*time.Second)
	t.Logf("whole after start in %s", took.Round(time.Millisecond))

	ctx := context.Background()
	admin := srv.Client()
	if err := admin.ConfigSet(ctx, "maxmemory-policy", "noeviction").Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.ConfigSet(ctx, "maxmemory", "1").Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.Set(ctx, f.ks.Base()+"probe", 1, 0).Err(); err == nil || !strings.HasPrefix(err.Error(), "OOM") {
		t.Fatalf("a write under maxmemory 1: %v, want OOM", err)
	}
	outageStart := time.Now()

	// The service dies during the outage; its respawns cannot register.
	svc := before.Services[0].PID
	if err := syscall.Kill(svc, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 20*time.Second, "the service's exit blamed on Redis", func() bool {
		return f.logContains("service echo#0 exited while Redis was failing")
	})
	// A copy started now cannot register: it exits with the status that
	// tells the launcher so.
	if code := f.runChild(t, "MEGANE_ROLE=service", "MEGANE_SERVICE=echo", "MEGANE_SERVICE_COPY=1"); code != ExitRedisUnavailable {
		t.Errorf("a service started while Redis refuses writes exited with status %d, want %d", code, ExitRedisUnavailable)
	}
	// Long enough that every heartbeat key has expired several TTLs ago.
	testwait.For(t, 20*time.Second, "the heartbeat keys expired and 3 s of outage", func() bool {
		n, err := admin.Exists(ctx, f.ks.ClusterHeartbeat(0), f.ks.ClusterHeartbeat(1)).Result()
		return err == nil && n == 0 && time.Since(outageStart) > 3*time.Second
	})
	if !f.logContains("Redis is failing") {
		t.Error("the launcher did not notice Redis failing")
	}

	if err := admin.ConfigSet(ctx, "maxmemory", "0").Err(); err != nil {
		t.Fatal(err)
	}
	t.Logf("outage of %s", time.Since(outageStart).Round(time.Millisecond))
	after, took := f.waitWhole(t, 30*time.Second)
	t.Logf("whole %s after Redis took writes again", took.Round(time.Millisecond))

	for i, pid := range f.pids(after)[:healClusters] {
		if pid != before.Clusters[i].PID {
			t.Errorf("cluster %d was replaced: pid %d → %d", i, before.Clusters[i].PID, pid)
		}
	}
	if after.Services[0].PID == svc {
		t.Errorf("the killed service was not replaced")
	}
	f.noChildJudged(t)
	if f.logContains("testbot event: service_exited") && strings.Contains(f.serviceExitDetails(), "gave up") {
		t.Errorf("the service was given up on: %s", f.serviceExitDetails())
	}
}

// runChild runs the testbot in a child role against the fleet's Redis, as
// the launcher would spawn it, and returns its exit status.
func (f *fleet) runChild(t *testing.T, env ...string) int {
	t.Helper()
	cmd := exec.Command(f.bin)
	cmd.Env = append(os.Environ(), append([]string{
		"DISCORD_TOKEN=" + f.srv.Token(), "REDIS_URL=" + f.redisURL(), "MEGANE_NAMESPACE=" + f.ks.Namespace(),
		"TESTBOT_SERVICE=1",
	}, env...)...)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatalf("run %s: %v", f.bin, err)
	}
	if code := cmd.ProcessState.ExitCode(); code != ExitRedisUnavailable {
		t.Logf("child output:\n%s", out)
		return code
	}
	return ExitRedisUnavailable
}

// serviceExitDetails returns the launcher's log lines about service exits.
func (f *fleet) serviceExitDetails() string { return f.logLines("service echo#0") }

// logLines returns the launcher's log lines that contain any of subs.
func (f *fleet) logLines(subs ...string) string {
	b, _ := os.ReadFile(f.log)
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		if slices.ContainsFunc(subs, func(s string) bool { return strings.Contains(line, s) }) {
			out = append(out, line)
		}
	}
	return strings.Join(out, "\n")
}

// TestRedisLosingEveryKeyIsRepaired: FLUSHALL, then a restart without
// persistence, each leave Redis empty under a running bot. Every process
// rewrites what it owns (launcher, gateway and cluster hashes, shard map,
// sessions, statuses, IPC registrations, consumer groups) and each cluster
// rebuilds the cache projection by re-identifying its shards, without any
// child being killed.
func TestRedisLosingEveryKeyIsRepaired(t *testing.T) {
	srv := testredis.StartServer(t, testredis.ServerOptions{})
	f := newFleet(t, fleetOptions{shards: healShards, clusters: healClusters, maxConcurrency: 16, redis: srv, env: healEnv})
	f.start()
	before, took := f.waitWhole(t, 60*time.Second)
	t.Logf("whole after start in %s", took.Round(time.Millisecond))
	ctx := context.Background()

	check := func(t *testing.T, what string) {
		after, took := f.waitWhole(t, 30*time.Second)
		t.Logf("whole %s after %s", took.Round(time.Millisecond), what)
		if !slices.Equal(f.pids(after), f.pids(before)) {
			t.Errorf("children replaced: pids %v → %v", f.pids(before), f.pids(after))
		}
		f.noChildJudged(t)
		identifies, _ := f.shardActivity()
		for s := range healShards {
			if identifies[s] < 2 {
				t.Errorf("shard %d identified %d times: its projection was not rebuilt by a re-identify", s, identifies[s])
			}
		}
		if v := f.srv.Violations(); len(v) > 0 {
			t.Errorf("identify violations: %+v", v)
		}
	}

	t.Run("FLUSHALL", func(t *testing.T) {
		if err := srv.Client().FlushAll(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		check(t, "FLUSHALL")
	})
	if t.Failed() {
		t.FailNow()
	}
	t.Run("RestartWithoutPersistence", func(t *testing.T) {
		srv.Restart()
		check(t, "a restart without persistence")
	})
}

// TestRestartServiceRevivesAGaveUpService: a service that crashed at start
// until the launcher gave up on it comes back with the launcher's
// restart-service op, as megane-cli restart-service sends it.
func TestRestartServiceRevivesAGaveUpService(t *testing.T) {
	crash := filepath.Join(t.TempDir(), "crash")
	if err := os.WriteFile(crash, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	f := newFleet(t, fleetOptions{shards: 2, clusters: 1, maxConcurrency: 16, env: []string{
		"TESTBOT_SERVICE=1", "TESTBOT_SERVICE_CRASH_FILE=" + crash,
		"MEGANE_MAX_RESTARTS=1", "MEGANE_RESTART_BACKOFF=50ms",
	}})
	f.start()
	testwait.For(t, 30*time.Second, "the service given up", func() bool {
		st, err := f.status()
		return err == nil && len(st.Services) == 1 && st.Services[0].State == StateGaveUp
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	// Still crashing: the op says so.
	var out []ServiceStatus
	err := f.node.CallJSON(ctx, LauncherAddr, OpRestartService, RestartServiceRequest{Service: "echo"}, &out)
	if err == nil || !strings.Contains(err.Error(), "did not become ready") {
		t.Fatalf("restart of a crashing service: %v", err)
	}
	var re *redisipc.RemoteError
	if !errors.As(err, &re) {
		t.Errorf("error %T is not a remote error", err)
	}
	if err := f.node.CallJSON(ctx, LauncherAddr, OpRestartService, RestartServiceRequest{Service: "nope"}, &out); err == nil ||
		!strings.Contains(err.Error(), "unknown service") {
		t.Errorf("restart of an unknown service: %v", err)
	}

	testwait.For(t, 30*time.Second, "the service given up again", func() bool {
		st, err := f.status()
		return err == nil && st.Services[0].State == StateGaveUp
	})
	if err := os.Remove(crash); err != nil {
		t.Fatal(err)
	}
	copy0 := 0
	if err := f.node.CallJSON(ctx, LauncherAddr, OpRestartService, RestartServiceRequest{Service: "echo", Copy: &copy0}, &out); err != nil {
		t.Fatalf("restart-service: %v", err)
	}
	if len(out) != 1 || out[0].State != StateReady || out[0].PID == 0 {
		t.Fatalf("restart-service answered %+v", out)
	}
	if res, err := f.node.Call(ctx, redisipc.ServiceAddr("echo"), "say", []byte(`"up"`)); err != nil || string(res) != `"up"` {
		t.Errorf("the revived service answered %q, %v", res, err)
	}

	// A running service restarts into a new process.
	old := out[0].PID
	if err := f.node.CallJSON(ctx, LauncherAddr, OpRestartService, RestartServiceRequest{Service: "echo"}, &out); err != nil {
		t.Fatalf("restart-service of a running service: %v", err)
	}
	if out[0].PID == old || out[0].State != StateReady {
		t.Errorf("after the restart: %+v (old pid %d)", out[0], old)
	}
}
