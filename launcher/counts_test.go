package launcher

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/megane-go/megane/discordtest"
	"github.com/megane-go/megane/inspect"
	"github.com/megane-go/megane/internal/testwait"
	"github.com/megane-go/megane/redisipc"
	"github.com/megane-go/megane/stats"
)

// TestGuildCountsAgree checks every view of the guild counts a user can
// read — eval shard_statuses and guilds, the clusters' statistics, the
// shard status hashes (megane-cli status) — against the fake Discord's
// world: after guilds were joined and left since READY, after a requested
// restart (the shards RESUME, so no READY tells them their guilds), and
// after a SIGKILL with a guild joined while the cluster was down.
func TestGuildCountsAgree(t *testing.T) {
	f := newFleet(t, fleetOptions{shards: 4, clusters: 2, maxConcurrency: 4, guilds: 16})
	f.start()
	f.waitAllReady(60 * time.Second)

	// READY's guild list goes stale: two joins and a leave.
	for i := range 2 {
		if _, _, err := f.srv.JoinGuild("joined " + strconv.Itoa(i)); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := f.srv.LeaveGuild(f.srv.World().Guilds[0].ID); err != nil {
		t.Fatal(err)
	}
	f.waitCountsAgree(t, "after joins and a leave")

	t.Run("RequestedRestart", func(t *testing.T) {
		before := f.waitAllReady(10 * time.Second)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var cs ClusterStatus
		if err := f.node.CallJSON(ctx, LauncherAddr, OpRestartCluster, RestartClusterRequest{Cluster: 0}, &cs); err != nil {
			t.Fatalf("restart-cluster: %v", err)
		}
		f.waitNewProcess(t, 0, before.Clusters[0].PID)
		f.waitCountsAgree(t, "after a restart")
	})

	t.Run("SIGKILL", func(t *testing.T) {
		before := f.waitAllReady(10 * time.Second)
		pid := before.Clusters[1].PID
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		testwait.For(t, 5*time.Second, "the cluster process gone", func() bool { return !f.ours(pid) })
		// Replayed on RESUME: the new process learns of it from the replay.
		joinOnShards(t, f, before.Clusters[1].Shards)
		f.waitNewProcess(t, 1, pid)
		f.waitCountsAgree(t, "after a SIGKILL")
	})
}

// joinOnShards makes the bot join guilds until one lands on one of shards.
func joinOnShards(t *testing.T, f *fleet, shards []int) {
	t.Helper()
	for i := range 64 {
		g, _, err := f.srv.JoinGuild("while down " + strconv.Itoa(i))
		if err != nil {
			t.Fatal(err)
		}
		if contains(shards, discordtest.ShardFor(g.ID, f.opts.shards)) {
			return
		}
	}
	t.Fatalf("no joined guild landed on shards %v", shards)
}

func (f *fleet) waitNewProcess(t *testing.T, c, oldPID int) {
	t.Helper()
	testwait.For(t, 30*time.Second, "a new process of the cluster, and every cluster ready", func() bool {
		return f.waitAllReady(30 * time.Second).Clusters[c].PID != oldPID
	})
}

// waitCountsAgree waits until every view shows the world's guild count of
// every shard and cluster, and fails with the last disagreement.
func (f *fleet) waitCountsAgree(t *testing.T, when string) {
	t.Helper()
	testwait.Problems(t, 15*time.Second, when+": guild counts that agree", func() []string {
		if d := f.countsDisagree(); d != "" {
			return []string{d}
		}
		return nil
	})
}

// countsDisagree returns "" when every view agrees with the world, else
// what differs.
func (f *fleet) countsDisagree() string {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	want := map[int]int{} // shard -> guilds
	for s := range f.opts.shards {
		want[s] = 0
	}
	for _, g := range f.srv.World().Guilds {
		want[discordtest.ShardFor(g.ID, f.opts.shards)]++
	}
	ov, err := inspect.New(f.rdb, f.ks).Overview(ctx)
	if err != nil {
		return err.Error()
	}
	clusterOf := map[int]int{}
	wantCluster := map[int]int{}
	var diffs []string
	for _, s := range ov.Shards {
		clusterOf[s.ID] = s.Cluster
		wantCluster[s.Cluster] += want[s.ID]
		if s.Guilds != want[s.ID] {
			diffs = append(diffs, fmt.Sprintf("status hash of shard %d: %d, want %d", s.ID, s.Guilds, want[s.ID]))
		}
	}

	g, err := f.node.Eval(ctx, redisipc.TargetClusters, `{"statuses": shard_statuses, "guilds": guilds, "cluster": cluster}`)
	if err != nil {
		return "eval: " + err.Error()
	}
	if len(g.Missing) > 0 {
		return fmt.Sprintf("eval: no answer from %v", g.Missing)
	}
	for _, a := range g.Answers {
		var v struct {
			Statuses []struct{ ID, Guilds int } `json:"statuses"`
			Guilds   int                        `json:"guilds"`
			Cluster  int                        `json:"cluster"`
		}
		if err := a.Decode(&v); err != nil {
			return fmt.Sprintf("eval from %s: %v", a.From, err)
		}
		if v.Guilds != wantCluster[v.Cluster] {
			diffs = append(diffs, fmt.Sprintf("eval guilds of cluster %d: %d, want %d", v.Cluster, v.Guilds, wantCluster[v.Cluster]))
		}
		for _, s := range v.Statuses {
			if s.Guilds != want[s.ID] {
				diffs = append(diffs, fmt.Sprintf("eval shard_statuses of shard %d: %d, want %d", s.ID, s.Guilds, want[s.ID]))
			}
		}
	}

	reports, err := stats.ReadAll(ctx, f.rdb, f.ks, 0)
	if err != nil {
		return err.Error()
	}
	seen := 0
	for _, r := range reports {
		c, ok := clusterReport(r.Name)
		if !ok {
			continue
		}
		seen++
		if got, ok := r.Int("guilds"); !ok || got != int64(wantCluster[c]) {
			diffs = append(diffs, fmt.Sprintf("stats guilds of cluster %d: %v, want %d", c, r.Fields["guilds"], wantCluster[c]))
		}
	}
	if seen != f.opts.clusters {
		diffs = append(diffs, fmt.Sprintf("%d clusters report statistics, want %d", seen, f.opts.clusters))
	}
	sort.Strings(diffs)
	if len(diffs) == 0 {
		return ""
	}
	b, _ := json.Marshal(diffs)
	return string(b)
}

func clusterReport(name string) (int, bool) {
	var c int
	if _, err := fmt.Sscanf(name, "cluster:%d", &c); err != nil {
		return 0, false
	}
	return c, true
}
