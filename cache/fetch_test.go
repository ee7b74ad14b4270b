package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"strings"
	"sync"
	"testing"
)

// fakeIPC routes calls to per-address handlers, as redisipc would, and
// records them.
type fakeIPC struct {
	mu       sync.Mutex
	handlers map[string]func(context.Context, []byte) ([]byte, error)
	calls    []string
	fail     map[string]error
}

func (f *fakeIPC) Call(ctx context.Context, to, op string, payload []byte) ([]byte, error) {
	f.mu.Lock()
	f.calls = append(f.calls, to+" "+op+" "+string(payload))
	h, err := f.handlers[to], f.fail[to]
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	if h == nil || op != FetchOp {
		return nil, fmt.Errorf("no handler for %s %s", to, op)
	}
	return h(ctx, payload)
}

func (f *fakeIPC) took() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := append([]string(nil), f.calls...)
	f.calls = nil
	sort.Strings(out)
	return out
}

// clusterSource is what a cluster would serve from its disgo client: Discord
// JSON objects, with fields the projection does not keep.
type clusterSource struct{ objects map[string][]byte }

func (c clusterSource) Lookup(_ context.Context, kind Entity, guild, id uint64) ([]byte, error) {
	if b, ok := c.objects[fmt.Sprintf("%s/%d/%d", kind, guild, id)]; ok {
		return b, nil
	}
	if b, ok := c.objects[fmt.Sprintf("%s/%d", kind, id)]; ok {
		return b, nil
	}
	return nil, fmt.Errorf("%s %d: %w", kind, id, ErrNotFound)
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	return b
}

// fetchSetup: 2 clusters x 2 shards; g1 and g2 projected; the clusters can
// also answer for g3 (not projected) and for fields the projection drops.
const g3 uint64 = g1 + 2<<22 // shard 2 of 4: cluster 1

func fetchSetup(t *testing.T, mod func(*Config)) (*harness, *fakeIPC) {
	h := newHarness(t, mod)
	// shard of g = (g>>22)%4; the shard map says which cluster runs it.
	sm := map[string]any{"shard_count": "4", "clusters": "2", "0": "0", "1": "0", "2": "1", "3": "1"}
	if err := h.rdb.HSet(h.ctx, h.ks.ShardMap(), sm).Err(); err != nil {
		t.Fatal(err)
	}
	for _, g := range []uint64{g1, g2} {
		s := typicalGuild(g)
		s.members = append(s.members, memberObj(userObj(42, "alice")))
		h.send(ShardOf(g, 4), "GUILD_CREATE", guildCreate(s))
	}
	h.flush()
	src := clusterSource{objects: map[string][]byte{}}
	for _, g := range []uint64{g1, g2, g3} {
		gc := guildCreate(typicalGuild(g))
		gc["description"] = "full description, which the projection does not keep"
		src.objects[fmt.Sprintf("guild/%d", g)] = mustJSON(gc)
	}
	u := userObj(42, "alice")
	u["banner"] = "b4nn3r"
	src.objects["user/42"] = mustJSON(u)
	src.objects[fmt.Sprintf("channel/%d", g3+1)] = mustJSON(obj{"id": sf(g3 + 1), "type": 0, "guild_id": sf(g3), "name": "remote", "topic": "long topic"})
	mux := NewOwnerMux(src)
	mux.Handle("ban", OwnerSourceFunc(func(_ context.Context, kind Entity, guild, id uint64) ([]byte, error) {
		return mustJSON(obj{"user_id": sf(id), "reason": "spam in " + sf(guild)}), nil
	}))
	ipc := &fakeIPC{handlers: map[string]func(context.Context, []byte) ([]byte, error){
		"cluster:0": OwnerHandler(mux),
		"cluster:1": OwnerHandler(mux),
	}, fail: map[string]error{}}
	return h, ipc
}

func newFetcher(t *testing.T, h *harness, ipc Requester, fallback OwnerSource) *Fetcher {
	f, err := NewFetcher(FetcherConfig{Redis: h.rdb, Keys: h.ks, Requester: ipc, Fallback: fallback})
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestFetchFromProjectionAsksNobody(t *testing.T) {
	h, ipc := fetchSetup(t, nil)
	f := newFetcher(t, h, ipc, nil)
	g, err := f.FetchGuild(h.ctx, g1)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "name", g.Name, "Fake Guild "+sf(g1))
	u, err := f.FetchUser(h.ctx, 42)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "user", u.Username, "alice")
	c, err := f.FetchChannel(h.ctx, g2+1)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "channel guild", c.GuildID, g2)
	eq(t, "calls", ipc.took(), []string(nil))
}

func TestFetchAsksTheOwnerOnly(t *testing.T) {
	h, ipc := fetchSetup(t, nil)
	f := newFetcher(t, h, ipc, nil)
	shard := ShardOf(g3, 4)
	owner := "cluster:" + map[int]string{0: "0", 1: "0", 2: "1", 3: "1"}[shard]
	g, err := f.FetchGuild(h.ctx, g3)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "remote guild", g.Name, "Fake Guild "+sf(g3))
	eq(t, "untruncated extra field", g.Fields["description"], "full description, which the projection does not keep")
	eq(t, "calls", ipc.took(), []string{owner + ` cache.fetch {"kind":"guild","ids":["` + sf(g3) + `"]}`})
	addr, err := f.Owner(h.ctx, g3)
	eq(t, "Owner", addr, owner)
	if err != nil {
		t.Fatal(err)
	}

	if _, err := f.FetchGuild(h.ctx, 123<<22); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown guild: %v, want ErrNotFound", err)
	}
}

func TestFetchFieldNotKeptGoesToOwner(t *testing.T) {
	h, ipc := fetchSetup(t, nil)
	f := newFetcher(t, h, ipc, nil)
	g, err := f.FetchGuild(h.ctx, g1, WithFields("description"))
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "description", g.Fields["description"], "full description, which the projection does not keep")
	eq(t, "one call", len(ipc.took()), 1)
	// A kept field that is null in the projection needs nobody.
	if _, err := f.FetchGuild(h.ctx, g1, WithFields("icon")); err != nil {
		t.Fatal(err)
	}
	eq(t, "no call for a kept field", ipc.took(), []string(nil))
	// A user's owner is found through the user's guilds.
	u, err := f.FetchUser(h.ctx, 42, WithFields("banner"))
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "banner", u.Fields["banner"], "b4nn3r")
	calls := ipc.took()
	if len(calls) != 1 || !strings.Contains(calls[0], `"kind":"user"`) {
		t.Errorf("calls = %v", calls)
	}
}

func TestFetchBatchOneCallPerOwner(t *testing.T) {
	h, ipc := fetchSetup(t, nil)
	f := newFetcher(t, h, ipc, nil)
	var ids []uint64
	for s := uint64(0); s < 8; s++ {
		ids = append(ids, (1000+s)<<22) // two guilds per shard, none projected
	}
	ids = append(ids, g1, g3)
	src := clusterSource{objects: map[string][]byte{}}
	for _, id := range ids {
		src.objects[fmt.Sprintf("guild/%d", id)] = mustJSON(obj{"id": sf(id), "name": "g" + sf(id)})
	}
	ipc.handlers["cluster:0"] = OwnerHandler(src)
	ipc.handlers["cluster:1"] = OwnerHandler(src)
	got, err := f.FetchGuilds(h.ctx, ids)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "found", len(got), len(ids))
	eq(t, "projected one served locally", got[g1].Name, "Fake Guild "+sf(g1))
	calls := ipc.took()
	// One request per owner, carrying exactly the guilds it owns.
	eq(t, "calls", len(calls), 2)
	for _, c := range calls {
		var req fetchRequest
		_ = json.Unmarshal([]byte(strings.SplitN(c, " ", 3)[2]), &req)
		for _, g := range req.IDs {
			var gid uint64
			fmt.Sscan(g, &gid)
			want := map[int]string{0: "cluster:0", 1: "cluster:0", 2: "cluster:1", 3: "cluster:1"}[ShardOf(gid, 4)]
			if !strings.HasPrefix(c, want+" ") {
				t.Errorf("guild %d asked of the wrong cluster in %q (want %s)", gid, c, want)
			}
		}
		eq(t, "ids per owner", len(req.IDs), map[bool]int{true: 5, false: 4}[strings.HasPrefix(c, "cluster:1")])
	}
}

func TestFetchUnknownGuildUsesFallbackOrNotFound(t *testing.T) {
	h, ipc := fetchSetup(t, nil)
	f := newFetcher(t, h, ipc, nil)
	if _, err := f.FetchChannel(h.ctx, g3+1); !errors.Is(err, ErrNotFound) {
		t.Errorf("channel of unknown guild: %v, want ErrNotFound", err)
	}
	if _, err := f.FetchUser(h.ctx, 999); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown user: %v, want ErrNotFound", err)
	}
	eq(t, "no call without a known guild", ipc.took(), []string(nil))

	var asked []string
	rest := OwnerSourceFunc(func(ctx context.Context, kind Entity, guild, id uint64) ([]byte, error) {
		asked = append(asked, fmt.Sprintf("%s %d", kind, id))
		if kind == EntityChannel && id == g3+1 {
			return mustJSON(obj{"id": sf(id), "type": 0, "guild_id": sf(g3), "name": "via rest"}), nil
		}
		return nil, ErrNotFound
	})
	f = newFetcher(t, h, ipc, rest)
	c, err := f.FetchChannel(h.ctx, g3+1)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "fallback channel", []any{c.Name, c.GuildID}, []any{"via rest", g3})
	eq(t, "asked", asked, []string{"channel " + sf(g3+1)})
	eq(t, "still no call", ipc.took(), []string(nil))
}

func TestFetchEntityNotProjected(t *testing.T) {
	h, ipc := fetchSetup(t, func(c *Config) { c.Entities = []Entity{EntityGuild, EntityChannel, EntityRole} })
	src := clusterSource{objects: map[string][]byte{
		fmt.Sprintf("member/%d/42", g1): mustJSON(memberObj(userObj(42, "alice"), g1+11)),
	}}
	ipc.handlers["cluster:0"], ipc.handlers["cluster:1"] = OwnerHandler(src), OwnerHandler(src)
	f := newFetcher(t, h, ipc, nil)
	m, err := f.FetchMember(h.ctx, g1, 42)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "member roles", m.Roles, []uint64{g1 + 11})
	eq(t, "asked owner", len(ipc.took()), 1)
}

func TestFetchCustomKindAndOwnerFailure(t *testing.T) {
	h, ipc := fetchSetup(t, nil)
	f := newFetcher(t, h, ipc, nil)
	got, err := f.Fetch(h.ctx, "ban", g1, []uint64{7, 8})
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "ban", got[7], map[string]string{"user_id": "7", "reason": "spam in " + sf(g1)})
	eq(t, "one call", len(ipc.took()), 1)

	ipc.fail["cluster:1"] = errors.New("timeout")
	ipc.fail["cluster:0"] = errors.New("timeout")
	_, err = f.FetchGuilds(h.ctx, []uint64{g3, g1})
	if err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Errorf("owner failure not reported: %v", err)
	}
	gs, _ := f.FetchGuilds(h.ctx, []uint64{g3, g1})
	if _, ok := gs[g1]; !ok {
		t.Error("partial result lost the projected guild")
	}
}

func TestOwnerHandlerRejectsGarbage(t *testing.T) {
	hd := OwnerHandler(NewOwnerMux(nil))
	if _, err := hd(context.Background(), []byte("{")); err == nil {
		t.Error("malformed request accepted")
	}
	b, err := hd(context.Background(), []byte(`{"kind":"guild","ids":["1","x"]}`))
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "empty reply", string(b), `{"items":{}}`)
}

func TestCounts(t *testing.T) {
	h, _ := fetchSetup(t, nil)
	h.send(ShardOf(g1, 4), "GUILD_DELETE", obj{"id": sf(g1), "unavailable": true})
	h.flush()
	s1, s2 := ShardOf(g1, 4), ShardOf(g2, 4)
	c1, err := h.r.ShardCounts(h.ctx, s1)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "shard of g1", c1, Counts{Guilds: 1, Unavailable: 1, Channels: 5, Roles: 6, Members: 2, Users: 2})
	total, err := h.r.TotalCounts(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "total", total, Counts{Guilds: 2, Unavailable: 1, Channels: 10, Roles: 12, Members: 4, Users: 2})
	cl := map[int]int{0: 0, 1: 0, 2: 1, 3: 1}
	var sum Counts
	for cluster := 0; cluster < 2; cluster++ {
		c, err := h.r.ClusterCounts(h.ctx, cluster)
		if err != nil {
			t.Fatal(err)
		}
		want := Counts{}
		if cl[s1] == cluster {
			want.Add(c1)
		}
		if cl[s2] == cluster {
			c2, _ := h.r.ShardCounts(h.ctx, s2)
			want.Add(c2)
		}
		eq(t, fmt.Sprintf("cluster %d", cluster), c, want)
		sum.Add(c)
	}
	eq(t, "clusters sum to shards", sum.Channels, total.Channels)
	if _, err := h.r.ClusterCounts(h.ctx, 9); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown cluster: %v", err)
	}
	h.rdb.Del(h.ctx, h.ks.ShardMap())
	if _, err := h.r.TotalCounts(h.ctx); !errors.Is(err, ErrNotFound) {
		t.Errorf("no shard map: %v", err)
	}
}

// sourcedSource answers like src and says the answer came from from.
type sourcedSource struct {
	clusterSource
	from Source
}

func (s sourcedSource) LookupSource(ctx context.Context, kind Entity, guild, id uint64) ([]byte, Source, error) {
	b, err := s.Lookup(ctx, kind, guild, id)
	return b, s.from, err
}

func TestFetchReportsSources(t *testing.T) {
	h, ipc := fetchSetup(t, nil)
	fallback := OwnerSourceFunc(func(ctx context.Context, kind Entity, guild, id uint64) ([]byte, error) {
		return mustJSON(obj{"id": sf(id), "type": 0, "guild_id": sf(g3), "name": "via rest"}), nil
	})
	f := newFetcher(t, h, ipc, fallback)
	from := map[uint64]Source{}
	// Projected g1, owner-only g3 (plain OwnerSource), and a channel whose
	// guild no projection knows (the fallback).
	if _, err := f.FetchGuilds(h.ctx, []uint64{g1, g3}, WithSources(from)); err != nil {
		t.Fatal(err)
	}
	if _, err := f.FetchChannel(h.ctx, g3+7, WithSources(from)); err != nil {
		t.Fatal(err)
	}
	eq(t, "sources", from, map[uint64]Source{g1: SourceProjection, g3: SourceOwner, g3 + 7: SourceFallback})

	// An owner that tells (as clusters do) is believed, through OwnerMux.
	gc := mustJSON(guildCreate(typicalGuild(g3)))
	for _, want := range []Source{SourceOwnerREST, SourceOwnerCache} {
		inner := sourcedSource{clusterSource{objects: map[string][]byte{fmt.Sprintf("guild/%d", g3): gc}}, want}
		ipc.mu.Lock()
		ipc.handlers["cluster:1"] = OwnerHandler(NewOwnerMux(inner))
		ipc.mu.Unlock()
		got := map[uint64]Source{}
		if _, err := f.FetchGuild(h.ctx, g3, WithSources(got)); err != nil {
			t.Fatal(err)
		}
		eq(t, "owner source", got[g3], want)
	}
}
