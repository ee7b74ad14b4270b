package launcher

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/megane-go/megane/discordtest"
	"github.com/megane-go/megane/internal/testwait"
	"github.com/megane-go/megane/lifecycle"
	"github.com/megane-go/megane/sessions"
	"github.com/megane-go/megane/shardmap"
	"github.com/megane-go/megane/shardstatus"
)

// TestReshardWhileServing re-shards 8 → 16 shards with megane-cli while
// messages flow into every guild: every message reaches the listeners
// (duplicates only from the switch instant), the new generation spends
// exactly 16 identifies without a concurrency violation, the cache holds
// every guild once under the new shard map, the per-shard records all
// belong to the new map, and CallGuild reaches the new owner.
func TestReshardWhileServing(t *testing.T) {
	f := newFleet(t, fleetOptions{shards: 8, clusters: 4, maxConcurrency: 16, guilds: 48})
	f.start()
	f.waitAllReady(60 * time.Second)
	identBefore := len(f.srv.Identifies())

	stop := f.traffic(20 * time.Millisecond)
	out, err := f.cliErr("reshard", "--shards", "16")
	ids := stop()
	if err != nil {
		t.Fatalf("megane-cli reshard: %v\n%s", err, out)
	}
	for _, want := range []string{"standby: new cluster 0 ready", "switch: records moved", "re-sharded 8 → 16 shards"} {
		if !strings.Contains(out, want) {
			t.Errorf("megane-cli reshard does not print %q:\n%s", want, out)
		}
	}
	st := f.waitAllReady(60 * time.Second)
	if st.ShardCount != 16 {
		t.Fatalf("launcher status says %d shards", st.ShardCount)
	}

	// Identifies: the 16 new shards, each once, none too early.
	idents := f.srv.Identifies()[identBefore:]
	perShard := map[int]int{}
	for _, r := range idents {
		if r.ShardCount != 16 {
			t.Errorf("an IDENTIFY with %d shards during the re-shard", r.ShardCount)
		}
		perShard[r.Shard]++
	}
	if len(idents) != 16 || len(perShard) != 16 {
		t.Errorf("%d identifies over %d shards, want 16 over 16", len(idents), len(perShard))
	}
	if v := f.srv.Violations(); len(v) != 0 {
		t.Errorf("identify violations: %+v", v)
	}

	// Every message reached the listeners; duplicates only in the switch.
	f.waitSeen(ids, 30*time.Second)
	seen := f.seen()
	dups := 0
	for _, id := range ids {
		dups += seen[id] - 1
	}
	// The switch instant: from the last standby cluster ready (the switch
	// begins right after) to the last old cluster's exit.
	var begin, end time.Time
	for _, ev := range f.events() {
		switch {
		case ev.Type == lifecycle.ReshardStep && strings.HasPrefix(ev.Detail, "standby:"):
			begin = ev.At
		case ev.Type == lifecycle.ClusterExited && !begin.IsZero():
			end = ev.At
		}
	}
	inSwitch := 0
	for _, id := range ids {
		if at := id.Time(); !at.Before(begin.Add(-50*time.Millisecond)) && !at.After(end.Add(50*time.Millisecond)) {
			inSwitch++
		}
	}
	t.Logf("%d messages during the re-shard, %d in the switch (%s), %d handled twice", len(ids), inSwitch, end.Sub(begin).Round(time.Millisecond), dups)
	if begin.IsZero() || end.IsZero() {
		t.Fatalf("no standby or exit events: switch from %v to %v", begin, end)
	}
	if dups > inSwitch {
		t.Errorf("%d of %d messages were handled twice, %d were dispatched in the switch", dups, len(ids), inSwitch)
	}

	// The cache: every guild once, in its new shard's set, its hash naming it.
	ctx := context.Background()
	total := int64(0)
	for s := range 16 {
		total += f.rdb.SCard(ctx, f.ks.ShardGuilds(s)).Val()
	}
	world := f.srv.World().Guilds
	if total != int64(len(world)) {
		t.Errorf("the shard sets hold %d guilds, the bot has %d", total, len(world))
	}
	for _, g := range world {
		s := discordtest.ShardFor(g.ID, 16)
		if !f.rdb.SIsMember(ctx, f.ks.ShardGuilds(s), g.ID.String()).Val() {
			t.Errorf("guild %d is not in shard %d's set", g.ID, s)
		}
		if got := f.rdb.HGet(ctx, f.ks.Guild(uint64(g.ID)), "shard").Val(); got != strconv.Itoa(s) {
			t.Errorf("guild %d's hash says shard %q, want %d", g.ID, got, s)
		}
	}

	// Per-shard records: all of the new map.
	m, err := shardmap.Load(ctx, f.rdb, f.ks)
	if err != nil || m.ShardCount != 16 || len(m.Owners) != 16 {
		t.Fatalf("shard map %+v (%v)", m, err)
	}
	states, err := sessions.Load(ctx, f.rdb, f.ks, allShards(16))
	if err != nil {
		t.Fatal(err)
	}
	for s := range 16 {
		if states[s].ShardCount != 16 {
			t.Errorf("shard %d: session of %d shards", s, states[s].ShardCount)
		}
		rec := shardstatus.Parse(shardstatus.Get(ctx, f.rdb, f.ks, s).Val())
		if owner, _ := m.Owner(s); rec.Cluster != owner {
			t.Errorf("shard %d: status names cluster %d, the map %d", s, rec.Cluster, owner)
		}
	}
	if n := f.rdb.Exists(ctx, f.ks.Reshard().ShardSession(0), f.ks.Reshard().Events()).Val(); n != 0 {
		t.Errorf("the staging keyspace still holds %d of its keys", n)
	}

	// CallGuild reaches the cluster that runs the guild's new shard.
	for _, g := range world[:8] {
		var got struct {
			Shards     []int `json:"shards"`
			ShardCount int   `json:"shard_count"`
		}
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		b, err := f.node.CallGuild(cctx, uint64(g.ID), "testbot:shards", nil)
		cancel()
		if err != nil {
			t.Fatalf("CallGuild %d: %v", g.ID, err)
		}
		if err := json.Unmarshal(b, &got); err != nil {
			t.Fatal(err)
		}
		if s := discordtest.ShardFor(g.ID, 16); got.ShardCount != 16 || !contains(got.Shards, s) {
			t.Errorf("CallGuild for guild %d (shard %d) reached a cluster of shards %v/%d", g.ID, s, got.Shards, got.ShardCount)
		}
	}
	if n := countEvents(f.events(), lifecycle.ReshardStep, -1); n == 0 {
		t.Error("no reshard_step events")
	}
	testwait.For(t, 15*time.Second, "the status webhook to post the re-shard", func() bool {
		for _, m := range f.srv.Messages() {
			if strings.Contains(m.Content, "reshard_step") && strings.Contains(m.Content, "re-sharded 8 → 16") {
				return true
			}
		}
		return false
	})
	t.Logf("megane-cli reshard output:\n%s", out)
}

// TestReshardRefusedOrFailedKeepsTheOldGeneration: a re-shard the session
// budget cannot pay for is refused with the numbers and changes nothing;
// one whose new shards Discord rejects (4004) is torn down, and the old
// generation serves on.
func TestReshardRefusedOrFailedKeepsTheOldGeneration(t *testing.T) {
	f := newFleet(t, fleetOptions{shards: 4, clusters: 2, maxConcurrency: 16})
	f.start()
	st := f.waitAllReady(60 * time.Second)
	pids := f.pids(st)
	ctx := context.Background()

	// Budget: leave fewer session starts than 8 shards and the reserve need.
	if err := f.rdb.HSet(ctx, f.ks.Gateway(), "remaining", 5).Err(); err != nil {
		t.Fatal(err)
	}
	out, err := f.cliErr("reshard", "--shards", "8")
	if err == nil || !strings.Contains(out, "8 identifies needed, 5 remaining") {
		t.Fatalf("a re-shard beyond the budget: err %v, output:\n%s", err, out)
	}
	if err := f.rdb.HSet(ctx, f.ks.Gateway(), "remaining", 1000).Err(); err != nil {
		t.Fatal(err)
	}
	identBefore := len(f.srv.Identifies())

	// Discord rejects every new session.
	f.srv.RejectIdentifies(8, 4004)
	out, err = f.cliErr("reshard", "--shards", "8")
	if err == nil || !strings.Contains(out, "re-shard FAILED") || !strings.Contains(out, "torn down") {
		t.Fatalf("a re-shard whose new shards fail: err %v, output:\n%s", err, out)
	}
	f.srv.RejectIdentifies(0, 0)
	t.Logf("failed reshard output:\n%s", out)

	st = f.waitAllReady(30 * time.Second)
	if st.ShardCount != 4 {
		t.Errorf("launcher status says %d shards after the failed re-shard", st.ShardCount)
	}
	if got := f.pids(st); strings.Join(intsToStrings(got), ",") != strings.Join(intsToStrings(pids), ",") {
		t.Errorf("cluster processes changed: %v → %v", pids, got)
	}
	for _, r := range f.srv.Identifies()[identBefore:] {
		if r.ShardCount != 8 {
			t.Errorf("an IDENTIFY of the old generation (%d shards) during the failed re-shard", r.ShardCount)
		}
	}
	if m, _ := shardmap.Load(ctx, f.rdb, f.ks); m.ShardCount != 4 {
		t.Errorf("shard map of %d shards after the failed re-shard", m.ShardCount)
	}
	ids := f.say(f.srv.World().Guilds)
	f.waitSeen(ids, 30*time.Second)
}

func intsToStrings(v []int) []string {
	out := make([]string, len(v))
	for i, n := range v {
		out[i] = strconv.Itoa(n)
	}
	return out
}

// TestReshardWithTwoLaunchers re-shards a bot that two launchers run
// (4 clusters, 2 each): one runs the new generation and the switch, the
// other stops and restarts its clusters on their new shards when asked;
// every message reaches the bot, and both launchers end on the new count.
func TestReshardWithTwoLaunchers(t *testing.T) {
	a, b := coopFleet(t)
	identBefore := len(a.srv.Identifies())
	stop := a.traffic(20 * time.Millisecond)
	out, err := a.cliErr("reshard", "--shards", "24")
	ids := stop()
	if err != nil {
		t.Fatalf("megane-cli reshard: %v\n%s", err, out)
	}
	if !strings.Contains(out, "re-sharded 16 → 24 shards") || !strings.Contains(out, "with 1 other launchers") {
		t.Errorf("megane-cli reshard output:\n%s", out)
	}
	for _, f := range []*fleet{a, b} {
		st := f.waitOwnsReady(2, 60*time.Second)
		if st.ShardCount != 24 {
			t.Errorf("a launcher reports %d shards after the re-shard", st.ShardCount)
		}
		for _, c := range st.Clusters {
			if len(c.Shards) != 6 {
				t.Errorf("cluster %d runs shards %v, want 6 of the 24", c.ID, c.Shards)
			}
		}
	}
	if n := len(a.srv.Identifies()) - identBefore; n != 24 {
		t.Errorf("%d identifies during the re-shard, want 24", n)
	}
	if v := a.srv.Violations(); len(v) != 0 {
		t.Errorf("identify violations: %+v", v)
	}
	a.waitSeen(ids, 30*time.Second)
	t.Logf("%d messages during the re-shard; output:\n%s", len(ids), out)
}

// TestAutomaticReshard: with MEGANE_RESHARD_CHECK_INTERVAL set, the
// launcher re-shards by itself once Discord recommends enough more shards
// (here 4 → 8, growth 50 %), and not for a smaller growth.
func TestAutomaticReshard(t *testing.T) {
	f := newFleet(t, fleetOptions{shards: 4, clusters: 2, maxConcurrency: 16,
		env: []string{"MEGANE_RESHARD_CHECK_INTERVAL=1s", "MEGANE_RESHARD_GROWTH=50"}})
	f.start()
	f.waitAllReady(60 * time.Second)
	gatewayBot := func() int64 {
		n := int64(0)
		for route, m := range f.srv.Stats().REST {
			if strings.HasSuffix(route, "/gateway/bot") {
				for _, c := range m {
					n += c
				}
			}
		}
		return n
	}
	before := gatewayBot()
	f.srv.SetRecommendedShards(5) // +25 %: below the growth
	testwait.For(t, 10*time.Second, "two re-shard checks", func() bool {
		return gatewayBot() >= before+2
	})
	if st, _ := f.status(); st.ShardCount != 4 {
		t.Fatalf("re-sharded to %d for a growth of 25 %%", st.ShardCount)
	}
	f.srv.SetRecommendedShards(8)
	testwait.For(t, 60*time.Second, "the automatic re-shard to 8 shards", func() bool {
		st, err := f.status()
		if err != nil || st.ShardCount != 8 || !st.AllReady {
			return false
		}
		for _, c := range st.Clusters {
			if c.State != StateReady {
				return false
			}
		}
		return true
	})
	if m, _ := shardmap.Load(context.Background(), f.rdb, f.ks); m.ShardCount != 8 {
		t.Errorf("shard map of %d shards", m.ShardCount)
	}
	ids := f.say(f.srv.World().Guilds)
	f.waitSeen(ids, 30*time.Second)
}
