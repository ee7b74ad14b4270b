package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/disgoorg/disgo"
	"github.com/disgoorg/disgo/bot"
	disgocache "github.com/disgoorg/disgo/cache"
	"github.com/disgoorg/disgo/discord"
	"github.com/disgoorg/disgo/rest"

	"github.com/megane-go/megane/cache"
	"github.com/megane-go/megane/discordtest"
)

// Only disgo's REST client and cache run here, never a gateway, so this is
// safe in the race build.

func ownerFixture(t *testing.T, flags disgocache.Flags) (*discordtest.Server, *bot.Client) {
	t.Helper()
	srv, err := discordtest.NewServer(discordtest.Options{World: discordtest.WorldOptions{Guilds: 2}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	client, err := disgo.New(srv.Token(),
		bot.WithRestClientConfigOpts(rest.WithURL(srv.RESTURL())),
		bot.WithCacheConfigOpts(disgocache.WithCaches(flags)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { client.Rest.Close(context.Background()) })
	return srv, client
}

func restCalls(srv *discordtest.Server) int64 {
	var n int64
	for _, codes := range srv.Stats().REST {
		for _, c := range codes {
			n += c
		}
	}
	return n
}

// fetchVia runs one lookup through cache.OwnerHandler, as a FetchOp request
// from another process would, and returns the fields of id.
func fetchVia(t *testing.T, src cache.OwnerSource, kind cache.Entity, guild, id uint64) map[string]string {
	t.Helper()
	req := map[string]any{"kind": kind, "ids": []string{strconv.FormatUint(id, 10)}}
	if guild != 0 {
		req["guild_id"] = strconv.FormatUint(guild, 10)
	}
	payload, _ := json.Marshal(req)
	out, err := cache.OwnerHandler(src)(context.Background(), payload)
	if err != nil {
		t.Fatalf("%s %d: %v", kind, id, err)
	}
	var rep struct {
		Items map[string]map[string]string `json:"items"`
	}
	if err := json.Unmarshal(out, &rep); err != nil {
		t.Fatal(err)
	}
	return rep.Items[strconv.FormatUint(id, 10)]
}

func TestClientSourceREST(t *testing.T) {
	srv, client := ownerFixture(t, disgocache.FlagsNone)
	src := clientSource{client: client}
	w := srv.World()
	g := w.Guilds[0]
	gid := uint64(g.ID)
	ch := g.Channels[1] // a text channel, with a topic
	role := g.Roles[1]
	m := g.Members[0]
	u, _ := w.User(m.UserID)

	tests := []struct {
		kind      cache.Entity
		guild, id uint64
		want      map[string]string
	}{
		{cache.EntityGuild, 0, gid, map[string]string{"name": g.Name, "owner_id": g.OwnerID.String()}},
		{cache.EntityChannel, 0, uint64(ch.ID), map[string]string{"name": ch.Name, "topic": ch.Topic, "guild_id": g.ID.String()}},
		{cache.EntityRole, gid, uint64(role.ID), map[string]string{"name": role.Name, "guild_id": g.ID.String(),
			"permissions": strconv.FormatUint(role.Permissions, 10)}},
		{cache.EntityMember, gid, uint64(m.UserID), map[string]string{}},
		{cache.EntityUser, 0, uint64(u.ID), map[string]string{"username": u.Username, "global_name": u.GlobalName}},
	}
	for _, tt := range tests {
		t.Run(string(tt.kind), func(t *testing.T) {
			got := fetchVia(t, src, tt.kind, tt.guild, tt.id)
			for f, v := range tt.want {
				if got[f] != v {
					t.Errorf("%s = %q, want %q (all: %v)", f, got[f], v, got)
				}
			}
			if tt.kind == cache.EntityMember && got["joined_at"] == "" {
				t.Errorf("member without joined_at: %v", got)
			}
		})
	}

	for _, tt := range []struct {
		name      string
		kind      cache.Entity
		guild, id uint64
	}{
		{"unknown guild", cache.EntityGuild, 0, 42},
		{"unknown channel", cache.EntityChannel, 0, 42},
		{"unknown user", cache.EntityUser, 0, 42},
		{"unknown member", cache.EntityMember, gid, 42},
		{"unknown role", cache.EntityRole, gid, 42},
		{"member without guild", cache.EntityMember, 0, uint64(m.UserID)},
		{"role without guild", cache.EntityRole, 0, uint64(role.ID)},
		{"unknown kind", "ban", gid, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := src.Lookup(context.Background(), tt.kind, tt.guild, tt.id)
			if !errors.Is(err, cache.ErrNotFound) {
				t.Fatalf("Lookup = %v, want ErrNotFound", err)
			}
		})
	}
}

// With disgo's cache on, what it holds is answered without a REST call.
func TestClientSourcePrefersDisgoCache(t *testing.T) {
	srv, client := ownerFixture(t, disgocache.FlagsAll)
	g := srv.World().Guilds[0]
	client.Caches.AddGuild(discord.Guild{ID: g.ID, Name: "cached name", OwnerID: g.OwnerID})
	before := restCalls(srv)
	got := fetchVia(t, clientSource{client: client}, cache.EntityGuild, 0, uint64(g.ID))
	if got["name"] != "cached name" {
		t.Fatalf("guild = %v, want the cached one", got)
	}
	if n := restCalls(srv); n != before {
		t.Fatalf("%d REST calls for a cached guild", n-before)
	}
	// A miss falls through to REST.
	if got := fetchVia(t, clientSource{client: client}, cache.EntityGuild, 0, uint64(srv.World().Guilds[1].ID)); got["name"] != srv.World().Guilds[1].Name {
		t.Fatalf("uncached guild = %v", got)
	}
}

func TestLocalRequesterAnswersItself(t *testing.T) {
	var local, remote int
	l := localRequester{
		addr:   "cluster:1",
		local:  func(context.Context, []byte) ([]byte, error) { local++; return []byte("l"), nil },
		remote: requesterFunc(func(context.Context, string, string, []byte) ([]byte, error) { remote++; return []byte("r"), nil }),
	}
	ctx := context.Background()
	_, _ = l.Call(ctx, "cluster:1", cache.FetchOp, nil)
	_, _ = l.Call(ctx, "cluster:0", cache.FetchOp, nil)
	_, _ = l.Call(ctx, "cluster:1", "other", nil)
	if local != 1 || remote != 2 {
		t.Fatalf("local %d remote %d, want 1 and 2", local, remote)
	}
}

type requesterFunc func(ctx context.Context, to, op string, payload []byte) ([]byte, error)

func (f requesterFunc) Call(ctx context.Context, to, op string, payload []byte) ([]byte, error) {
	return f(ctx, to, op, payload)
}

// Repeated lookups of one entity cost one REST call per TTL, concurrent
// ones included, and each answer says where it came from.
func TestClientSourceRESTCache(t *testing.T) {
	srv, client := ownerFixture(t, disgocache.FlagsNone)
	var restN, cachedN atomic.Int64
	rc := newRESTCache(time.Minute, 100)
	now := time.Unix(1_700_000_000, 0)
	rc.now = func() time.Time { return now }
	src := clientSource{client: client, cache: rc, rest: &restN, cached: &cachedN}
	g := srv.World().Guilds[0]
	ctx := context.Background()
	lookup := func(kind cache.Entity, guild, id uint64) cache.Source {
		t.Helper()
		_, from, err := src.LookupSource(ctx, kind, guild, id)
		if err != nil {
			t.Fatal(err)
		}
		return from
	}
	before := restCalls(srv)
	for i := range 12 {
		want := cache.SourceOwnerCache
		if i == 0 {
			want = cache.SourceOwnerREST
		}
		if got := lookup(cache.EntityGuild, 0, uint64(g.ID)); got != want {
			t.Fatalf("lookup %d from %q, want %q", i+1, got, want)
		}
	}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() { lookup(cache.EntityChannel, 0, uint64(g.Channels[0].ID)) })
	}
	wg.Wait()
	if n := restCalls(srv) - before; n != 2 {
		t.Fatalf("%d REST calls for 12 lookups of a guild and 8 concurrent of a channel, want 2", n)
	}
	if restN.Load() != 2 || cachedN.Load() != 18 {
		t.Fatalf("counters rest=%d cached=%d, want 2 and 18", restN.Load(), cachedN.Load())
	}
	// Past the TTL, Discord is asked again.
	now = now.Add(time.Minute)
	if got := lookup(cache.EntityGuild, 0, uint64(g.ID)); got != cache.SourceOwnerREST {
		t.Fatalf("after the TTL: from %q, want a REST call", got)
	}
	// One role list answers for every role of the guild, within the bound.
	before = restCalls(srv)
	lookup(cache.EntityRole, uint64(g.ID), uint64(g.Roles[0].ID))
	if got := lookup(cache.EntityRole, uint64(g.ID), uint64(g.Roles[1].ID)); got != cache.SourceOwnerCache || restCalls(srv)-before != 1 {
		t.Fatalf("second role from %q after %d REST calls, want the cache after 1", got, restCalls(srv)-before)
	}
	small := newRESTCache(time.Minute, 2)
	for i := range 5 {
		_, _, _ = small.get(ctx, restKey{kind: cache.EntityGuild, id: uint64(i)}, func(context.Context) (map[restKey][]byte, error) {
			return map[restKey][]byte{{kind: cache.EntityGuild, id: uint64(i)}: []byte("{}")}, nil
		})
	}
	if n := small.len(); n != 2 {
		t.Fatalf("cache holds %d entities, bound 2", n)
	}
	// Not found is not kept, and not an error of the cache.
	if _, _, err := src.LookupSource(ctx, cache.EntityGuild, 0, 42); !errors.Is(err, cache.ErrNotFound) {
		t.Fatalf("unknown guild: %v", err)
	}
}
