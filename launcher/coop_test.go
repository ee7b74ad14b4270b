package launcher

import (
	"context"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/megane-go/megane/control"
	"github.com/megane-go/megane/discordtest"
	"github.com/megane-go/megane/identify"
	"github.com/megane-go/megane/internal/testwait"
	"github.com/megane-go/megane/leases"
	"github.com/megane-go/megane/sessions"
)

// coopLeaseTTL is the lease TTL of the cooperation tests: short, so a
// takeover fits a test, and long enough that renewals every 2 s never
// miss on a loaded machine.
const coopLeaseTTL = 6 * time.Second

// peer is a second launcher process on f's bot: the same fake Discord,
// Redis and namespace. Its cleanup only stops it; f's checks for children
// that outlived their launcher cover both.
func (f *fleet) peer(env ...string) *fleet {
	p := *f
	p.opts.env = append(slices.Clone(f.opts.env), env...)
	p.log = filepath.Join(f.t.TempDir(), "peer.log")
	p.cmd, p.exited, p.primary = nil, nil, f
	f.t.Cleanup(p.cleanup)
	return &p
}

// launcherRecord is f's launcher's record among cooperating launchers.
func (f *fleet) launcherRecord() (leases.Launcher, bool) {
	ls, err := leases.Launchers(context.Background(), f.rdb, f.ks)
	if err != nil || f.cmd == nil {
		return leases.Launcher{}, false
	}
	for _, l := range ls {
		if l.PID == f.cmd.Process.Pid {
			return l, true
		}
	}
	return leases.Launcher{}, false
}

// coopStatus asks f's launcher, at its own address, what it runs.
func (f *fleet) coopStatus() (Status, bool) {
	rec, ok := f.launcherRecord()
	if !ok {
		return Status{}, false
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	st, err := control.FetchStatus(ctx, f.node, control.At(rec.Addr))
	return st, err == nil
}

// waitOwnsReady waits until f's launcher owns n clusters, all ready.
func (f *fleet) waitOwnsReady(n int, timeout time.Duration) Status {
	f.t.Helper()
	var st Status
	testwait.For(f.t, timeout, strconv.Itoa(n)+" owned clusters ready", func() bool {
		var ok bool
		if st, ok = f.coopStatus(); !ok || len(st.Clusters) != n {
			return false
		}
		for _, c := range st.Clusters {
			if c.State != StateReady {
				return false
			}
		}
		return true
	})
	return st
}

// treePIDs is f's launcher and the children it runs now.
func (f *fleet) treePIDs(st Status) []int {
	pids := []int{f.cmd.Process.Pid}
	for _, c := range st.Clusters {
		pids = append(pids, c.PID)
	}
	for _, s := range st.Services {
		pids = append(pids, s.PID)
	}
	return pids
}

func coopFleet(t *testing.T) (*fleet, *fleet) {
	a := newFleet(t, fleetOptions{shards: 16, clusters: 2, maxConcurrency: 4, identifyWindow: 100 * time.Millisecond,
		env: []string{"MEGANE_TOTAL_CLUSTERS=4", "MEGANE_LEASE_TTL=" + coopLeaseTTL.String()}})
	a.start()
	a.waitOwnsReady(2, 60*time.Second)
	b := a.peer("MEGANE_CLUSTERS=4")
	b.start()
	b.waitOwnsReady(2, 60*time.Second)
	return a, b
}

// attachedPerShard counts the sessions a connection holds, per shard.
func attachedPerShard(srv *discordtest.Server) map[int]int {
	out := map[int]int{}
	for _, s := range srv.Sessions() {
		if s.Attached && !s.Invalidated {
			out[s.Shard]++
		}
	}
	return out
}

// TestCooperatingLaunchersShareAndTakeOver runs one bot with two launchers
// (4 clusters, 2 each), then SIGKILLs one launcher's whole process tree:
// the other, with spare capacity, takes its clusters over by RESUME, and
// messages sent meanwhile reach the bot.
func TestCooperatingLaunchersShareAndTakeOver(t *testing.T) {
	a, b := coopFleet(t)
	ctx := context.Background()

	names := []string{leases.ClusterName(0), leases.ClusterName(1), leases.ClusterName(2), leases.ClusterName(3)}
	ls, err := leases.Read(ctx, a.rdb, a.ks, names)
	if err != nil {
		t.Fatal(err)
	}
	recA, _ := a.launcherRecord()
	recB, _ := b.launcherRecord()
	owners := map[string]int{}
	for _, l := range ls {
		if !l.Held() {
			t.Fatalf("lease %s not held: %+v", l.Name, l)
		}
		owners[l.Owner]++
	}
	if owners[recA.ID] != 2 || owners[recB.ID] != 2 {
		t.Fatalf("lease owners %v, want 2 each for %s and %s", owners, recA.ID, recB.ID)
	}
	attached := attachedPerShard(a.srv)
	for s := range 16 {
		if attached[s] != 1 {
			t.Fatalf("shard %d has %d live sessions at the fake, want 1 (all: %v)", s, attached[s], attached)
		}
	}
	if v := a.srv.Violations(); len(v) != 0 {
		t.Fatalf("identify violations: %+v", v)
	}

	// Launchers that contradict the running plan refuse to start, naming
	// both values.
	for _, c := range []struct {
		env  string
		want []string
	}{
		{"MEGANE_SHARDS=8", []string{"MEGANE_SHARDS=8", "have 16 shards"}},
		{"MEGANE_TOTAL_CLUSTERS=3", []string{"MEGANE_TOTAL_CLUSTERS=3", "have 4 clusters"}},
		{"MEGANE_TOTAL_CLUSTERS=", []string{"run this bot together", recA.ID}},
	} {
		bad := a.peer(c.env)
		bad.start()
		select {
		case <-bad.exited:
		case <-time.After(30 * time.Second):
			t.Fatalf("launcher with %s did not refuse to start", c.env)
		}
		for _, w := range c.want {
			if !bad.logContains(w) {
				t.Errorf("launcher with %s: log does not say %q", c.env, w)
			}
		}
	}

	if info, err := identify.LoadGatewayInfo(ctx, a.rdb, a.ks); err != nil || info.Shards != 16 {
		t.Fatalf("gateway info after the refused launchers: %+v, %v", info, err)
	}

	// megane-cli shows both launchers and each cluster's owner, and a
	// restart reaches the launcher owning the cluster.
	out := a.cli("status")
	for _, w := range []string{recA.ID, recB.ID, "OWNER"} {
		if !strings.Contains(out, w) {
			t.Fatalf("megane-cli status does not show %q:\n%s", w, out)
		}
	}
	_, resumesBefore := a.shardActivity()
	for _, id := range []int{0, 3} {
		if out := a.cli("restart", strconv.Itoa(id)); !strings.Contains(out, `"state": "ready"`) {
			t.Fatalf("megane-cli restart %d:\n%s", id, out)
		}
	}
	if st, _ := a.coopStatus(); st.Clusters[0].Restarts != 1 {
		t.Fatalf("cluster 0 (launcher a) after the CLI restart: %+v", st.Clusters[0])
	}
	if st, _ := b.coopStatus(); st.Clusters[1].ID != 3 || st.Clusters[1].Restarts != 1 {
		t.Fatalf("cluster 3 (launcher b) after the CLI restart: %+v", st.Clusters)
	}
	_, resumesAfter := a.shardActivity()
	for _, s := range append(slices.Clone(stOf(a).Clusters[0].Shards), stOf(b).Clusters[1].Shards...) {
		if resumesAfter[s] != resumesBefore[s]+1 {
			t.Errorf("shard %d: resumes %d → %d after its cluster's restart", s, resumesBefore[s], resumesAfter[s])
		}
	}

	// Kill a's whole tree; b (capacity 4) takes its clusters over.
	stA, _ := a.coopStatus()
	var moved []int
	for _, c := range stA.Clusters {
		moved = append(moved, c.Shards...)
	}
	identifiesBefore, _ := a.shardActivity()
	killedAt := time.Now()
	for _, pid := range a.treePIDs(stA) {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	<-a.exited
	ids := a.say(a.guildsOf(moved)) // dispatched while nobody runs those shards
	b.waitOwnsReady(4, 30*time.Second)
	t.Logf("takeover: %s from SIGKILL to all 4 clusters ready under the other launcher (lease TTL %s)",
		time.Since(killedAt).Round(10*time.Millisecond), coopLeaseTTL)

	identifiesAfter, resumes := b.shardActivity()
	for _, s := range moved {
		if identifiesAfter[s] != identifiesBefore[s] {
			t.Errorf("moved shard %d identified again (%d → %d identifies); it should RESUME", s, identifiesBefore[s], identifiesAfter[s])
		}
		if resumes[s] == 0 {
			t.Errorf("moved shard %d never resumed", s)
		}
	}
	b.waitSeen(ids, 30*time.Second)
	if v := b.srv.Violations(); len(v) != 0 {
		t.Fatalf("identify violations after the takeover: %+v", v)
	}
	ls, _ = leases.Read(ctx, b.rdb, b.ks, names)
	for _, l := range ls {
		if l.Owner != recB.ID {
			t.Errorf("lease %s owned by %q after the takeover, want %s", l.Name, l.Owner, recB.ID)
		}
	}
}

// TestFrozenLauncherTreeGivesUpItsShards freezes one launcher's whole tree
// (SIGSTOP: a partitioned host) past its leases; the other launcher takes
// the clusters over. Woken up, the frozen processes stop without touching
// the sessions again: no resume or identify from them, no session stolen
// back, and the fences refuse their writes.
func TestFrozenLauncherTreeGivesUpItsShards(t *testing.T) {
	a, b := coopFleet(t)
	stA, _ := a.coopStatus()
	tree := a.treePIDs(stA)
	for _, pid := range tree {
		_ = syscall.Kill(pid, syscall.SIGSTOP)
	}
	frozen := true
	t.Cleanup(func() {
		if frozen {
			for _, pid := range tree {
				_ = syscall.Kill(pid, syscall.SIGCONT)
			}
		}
	})
	b.waitOwnsReady(4, 30*time.Second)
	stB, _ := b.coopStatus()
	closesBefore := b.srv.Stats().ServerCloses[4000]
	_, resumesBefore := b.shardActivity()
	identifiesBefore, _ := b.shardActivity()

	for _, pid := range tree {
		_ = syscall.Kill(pid, syscall.SIGCONT)
	}
	frozen = false
	// a's cluster processes notice they lost their leases and exit.
	for _, c := range stA.Clusters {
		testwait.For(t, 15*time.Second, "woken cluster "+strconv.Itoa(c.ID)+" to exit", func() bool {
			return !a.ours(c.PID)
		})
	}
	// Let anything a woken process might still do reach the fake.
	b.waitOwnsReady(4, 10*time.Second)
	stAfter, _ := b.coopStatus()
	for i, c := range stAfter.Clusters {
		if c.PID != stB.Clusters[i].PID || c.State != StateReady {
			t.Errorf("cluster %d of the new owner changed: %+v → %+v", c.ID, stB.Clusters[i], c)
		}
	}
	identifiesAfter, resumesAfter := b.shardActivity()
	for s := range 16 {
		if identifiesAfter[s] != identifiesBefore[s] || resumesAfter[s] != resumesBefore[s] {
			t.Errorf("shard %d: identifies %d → %d, resumes %d → %d after the frozen owner woke",
				s, identifiesBefore[s], identifiesAfter[s], resumesBefore[s], resumesAfter[s])
		}
	}
	if closes := b.srv.Stats().ServerCloses[4000]; closes != closesBefore {
		t.Errorf("%d sessions were resumed elsewhere after the frozen owner woke", closes-closesBefore)
	}
	attached := attachedPerShard(b.srv)
	for s := range 16 {
		if attached[s] != 1 {
			t.Errorf("shard %d has %d live sessions, want 1", s, attached[s])
		}
	}
	if !a.running() {
		t.Fatal("the woken launcher exited; it should stay and wait for free clusters")
	}
	// shutdown --launcher stops one launcher and leaves the other. The
	// woken launcher's IPC registration expired while it was frozen; it
	// answers again once its node's next heartbeat registered it.
	testwait.For(t, 30*time.Second, "the woken launcher to answer at its address", func() bool {
		_, ok := a.coopStatus()
		return ok
	})
	recA, _ := a.launcherRecord()
	if out := a.cli("shutdown", "--launcher", recA.ID); !strings.Contains(out, "ok") {
		t.Fatalf("megane-cli shutdown --launcher:\n%s", out)
	}
	select {
	case <-a.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("launcher a did not stop after shutdown --launcher")
	}
	if !b.running() {
		t.Fatal("launcher b stopped too")
	}
	b.waitOwnsReady(4, 10*time.Second)
	if !a.logContains("lost the lease of cluster") {
		t.Error("the woken launcher did not report its lost leases")
	}
	// The sessions carry the new owner's fence: the old tokens are refused.
	fences, err := sessions.Fences(context.Background(), b.rdb, b.ks, allShards(16))
	if err != nil {
		t.Fatal(err)
	}
	ls, _ := leases.Read(context.Background(), b.rdb, b.ks, []string{leases.ClusterName(0), leases.ClusterName(1),
		leases.ClusterName(2), leases.ClusterName(3)})
	for _, c := range stAfter.Clusters {
		for _, s := range c.Shards {
			if fences[s] != ls[c.ID].Token {
				t.Errorf("shard %d's fence is %d, want the new owner's token %d", s, fences[s], ls[c.ID].Token)
			}
		}
	}
}

func stOf(f *fleet) Status {
	st, _ := f.coopStatus()
	return st
}

// cli runs megane-cli against f's bot and returns its output; an error
// fails the test.
func (f *fleet) cli(args ...string) string {
	f.t.Helper()
	out, err := f.cliErr(args...)
	if err != nil {
		f.t.Fatalf("megane-cli %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}
