package cache

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/megane-go/megane/internal/testwait"
)

const (
	g1  uint64 = 661720242585600000
	g2  uint64 = g1 + 1<<22 // shard 1 of 4
	bot uint64 = 1100000000000000001
)

func eq[T any](t *testing.T, what string, got, want T) {
	t.Helper()
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s = %#v, want %#v", what, got, want)
	}
}

func TestGuildCreateLayout(t *testing.T) {
	h := newHarness(t, nil)
	spec := typicalGuild(g1)
	spec.features = []string{"COMMUNITY", "NEWS", "SOMETHING_NEW"}
	spec.emojis = []obj{{"id": "900", "name": "smile"}}
	h.send(0, "GUILD_CREATE", guildCreate(spec))
	h.flush()

	eq(t, "guild hash", h.hgetall(h.ks.Guild(g1)), map[string]string{
		"name": "Fake Guild " + sf(g1), "owner_id": sf(g1 + 100), "member_count": "1", "large": "0",
		"features": "65568,SOMETHING_NEW", "preferred_locale": "en-US", "premium_tier": "0",
		"verification_level": "0", "nsfw_level": "0", "joined_at": "2024-01-01T00:00:00.000000+00:00",
		"shard": "0",
	})
	eq(t, "channels", h.smembers(h.ks.GuildChannels(g1)), strs(g1+1, g1+2, g1+3, g1+4, g1+5))
	eq(t, "channel hash", h.hgetall(h.ks.Channel(g1+1)), map[string]string{
		"guild_id": sf(g1), "type": "0", "name": "channel-1", "position": "0", "nsfw": "0", "rate_limit_per_user": "0",
	})
	eq(t, "roles", h.smembers(h.ks.GuildRoles(g1)), strs(g1, g1+11, g1+12, g1+13, g1+14, g1+15))
	eq(t, "role hash", h.hgetall(h.ks.Role(g1)), map[string]string{
		"guild_id": sf(g1), "name": "@everyone", "permissions": "1071698660929", "position": "0", "color": "0",
		"hoist": "0", "managed": "0", "mentionable": "0",
	})
	eq(t, "members", h.smembers(h.ks.GuildMembers(g1)), strs(bot))
	eq(t, "member hash", h.hgetall(h.ks.Member(g1, bot)), map[string]string{
		"roles": "", "joined_at": "2024-01-01T00:00:00.000000+00:00", "pending": "0",
	})
	eq(t, "user hash", h.hgetall(h.ks.User(bot)), map[string]string{"username": "fakebot", "discriminator": "0", "bot": "1"})
	eq(t, "user guilds", h.smembers(h.ks.UserGuilds(bot)), strs(g1))
	eq(t, "users", h.smembers(h.ks.Users()), strs(bot))
	eq(t, "shard guilds", h.smembers(h.ks.ShardGuilds(0)), strs(g1))
	eq(t, "shard counts", h.hgetall(h.ks.ShardCounts(0)), map[string]string{sf(g1): "5,6,1"})
	eq(t, "emojis", h.hgetall(h.ks.GuildEmojis(g1)), map[string]string{"900": "smile"})
	eq(t, "schema guild", h.hgetall(h.ks.CacheSchema())["guild"], strings.Join(DefaultFields[EntityGuild], ","))

	g, err := h.r.Guild(h.ctx, g1)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "features", g.Features, []string{"COMMUNITY", "NEWS", "SOMETHING_NEW"})
	eq(t, "typed", []any{g.ID, g.Name, g.OwnerID, g.MemberCount, g.Unavailable, g.Shard}, []any{g1, "Fake Guild " + sf(g1), g1 + 100, 1, false, 0})
}

func TestReplayIsIdempotent(t *testing.T) {
	h := newHarness(t, nil)
	u := userObj(42, "alice")
	evs := []struct {
		typ string
		d   any
	}{
		{"READY", readyObj(0, 1, g1)},
		{"GUILD_CREATE", guildCreate(typicalGuild(g1))},
		{"CHANNEL_CREATE", obj{"id": "5", "type": 0, "guild_id": sf(g1), "name": "new", "position": 1, "permission_overwrites": []any{}}},
		{"GUILD_MEMBER_ADD", obj{"guild_id": sf(g1), "user": u, "roles": []string{}, "joined_at": "2026-01-01T00:00:00Z", "deaf": false, "mute": false, "flags": 0}},
		{"GUILD_ROLE_UPDATE", obj{"guild_id": sf(g1), "role": roleObj(g1+11, "renamed", 1)}},
		{"GUILD_UPDATE", obj{"id": sf(g1), "name": "renamed"}},
		{"CHANNEL_DELETE", obj{"id": sf(g1 + 2), "type": 0, "guild_id": sf(g1)}},
		{"THREAD_CREATE", threadObj(77, g1, g1+1, 42, "thread")},
		{"GUILD_MEMBER_UPDATE", obj{"guild_id": sf(g1), "user": u, "roles": []string{sf(g1 + 11)}, "nick": "al", "joined_at": "2026-01-01T00:00:00Z"}},
		{"GUILD_MEMBER_REMOVE", obj{"guild_id": sf(g1), "user": u}},
		{"GUILD_ROLE_DELETE", obj{"guild_id": sf(g1), "role_id": sf(g1 + 12)}},
	}
	for _, e := range evs {
		h.send(0, e.typ, e.d)
	}
	h.flush()
	want := h.snapshot()
	// A RESUME from an older sequence replays a suffix of what was handled,
	// in order; every suffix must leave the same state.
	for from := len(evs) - 1; from >= 1; from-- {
		for _, e := range evs[from:] {
			h.send(0, e.typ, e.d)
		}
		h.flush()
		if got := h.snapshot(); !reflect.DeepEqual(got, want) {
			t.Fatalf("replay from event %d (%s) changed the projection:\n got %v\nwant %v", from, evs[from].typ, got, want)
		}
	}
	// Spot-check the end state itself.
	eq(t, "guild name", h.hgetall(h.ks.Guild(g1))["name"], "renamed")
	eq(t, "alice gone", h.exists(h.ks.User(42)), false)
	eq(t, "users", h.smembers(h.ks.Users()), strs(bot))
	eq(t, "channels", h.smembers(h.ks.GuildChannels(g1)), strs(5, 77, g1+1, g1+3, g1+4, g1+5))
	eq(t, "counts", h.hgetall(h.ks.ShardCounts(0))[sf(g1)], "6,5,1")
}

func TestReplaySameBatchAndAcrossBatches(t *testing.T) {
	// The same events written as one batch and one event per batch must
	// give the same layout: batching is invisible.
	run := func(batch int) map[string]string {
		h := newHarness(t, func(c *Config) { c.BatchSize = batch })
		h.send(0, "READY", readyObj(0, 1, g1, g2))
		h.send(0, "GUILD_CREATE", guildCreate(typicalGuild(g1)))
		h.send(0, "GUILD_CREATE", guildCreate(typicalGuild(g2)))
		h.send(0, "CHANNEL_CREATE", obj{"id": "5", "type": 0, "guild_id": sf(g1), "name": "x"})
		h.send(0, "GUILD_DELETE", obj{"id": sf(g2)})
		h.send(0, "GUILD_CREATE", guildCreate(typicalGuild(g2)))
		h.send(0, "GUILD_CREATE", guildCreate(typicalGuild(g1)))
		h.send(0, "GUILD_DELETE", obj{"id": sf(g1), "unavailable": true})
		h.flush()
		snap := h.snapshot()
		delete(snap, h.ks.CacheSchema())
		return snap
	}
	one, many := run(1000), run(1)
	if !reflect.DeepEqual(one, many) {
		t.Fatalf("batched and unbatched differ:\n%v\n%v", one, many)
	}
}

func TestGuildUpdateIsPartial(t *testing.T) {
	h := newHarness(t, nil)
	spec := typicalGuild(g1)
	gc := guildCreate(spec)
	gc["icon"] = "abc"
	h.send(0, "GUILD_CREATE", gc)
	h.send(0, "GUILD_UPDATE", obj{"id": sf(g1), "name": "renamed", "icon": nil, "description": "not kept"})
	h.flush()
	g := h.hgetall(h.ks.Guild(g1))
	eq(t, "name", g["name"], "renamed")
	eq(t, "member_count kept", g["member_count"], "1")
	_, hasIcon := g["icon"]
	eq(t, "null icon removed", hasIcon, false)
	_, hasDesc := g["description"]
	eq(t, "unkept field absent", hasDesc, false)
}

func TestGuildDeleteUnavailableMarks(t *testing.T) {
	h := newHarness(t, nil)
	h.send(0, "GUILD_CREATE", guildCreate(typicalGuild(g1)))
	h.send(0, "GUILD_DELETE", obj{"id": sf(g1), "unavailable": true})
	h.flush()
	g, err := h.r.Guild(h.ctx, g1)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "unavailable", g.Unavailable, true)
	eq(t, "name kept", g.Name, "Fake Guild "+sf(g1))
	eq(t, "channels kept", len(h.smembers(h.ks.GuildChannels(g1))), 5)
	eq(t, "shard unavailable", h.smembers(h.ks.ShardUnavailable(0)), strs(g1))
	c, _ := h.r.ShardCounts(h.ctx, 0)
	eq(t, "counts", c, Counts{Guilds: 1, Unavailable: 1, Channels: 5, Roles: 6, Members: 1, Users: 1})

	h.send(0, "GUILD_CREATE", guildCreate(typicalGuild(g1)))
	h.flush()
	g, _ = h.r.Guild(h.ctx, g1)
	eq(t, "available again", g.Unavailable, false)
	eq(t, "shard unavailable empty", h.smembers(h.ks.ShardUnavailable(0)), []string{})
}

func TestGuildDeleteRemovesEverything(t *testing.T) {
	h := newHarness(t, nil)
	shared := userObj(42, "alice")
	s1 := typicalGuild(g1)
	s1.members = append(s1.members, memberObj(shared), memberObj(userObj(43, "bob")))
	s1.emojis = []obj{{"id": "900", "name": "smile"}}
	s2 := typicalGuild(g2)
	s2.members = append(s2.members, memberObj(shared))
	h.send(0, "GUILD_CREATE", guildCreate(s1))
	h.send(1, "GUILD_CREATE", guildCreate(s2))
	h.send(0, "THREAD_CREATE", threadObj(77, g1, g1+1, 42, "t"))
	h.flush()
	before := h.snapshot()

	h.send(0, "GUILD_DELETE", obj{"id": sf(g1)})
	h.flush()
	after := h.snapshot()
	for k := range after {
		if strings.Contains(k, sf(g1)) {
			t.Errorf("key %s survived the guild delete", k)
		}
	}
	for _, id := range []uint64{g1 + 1, g1 + 5, 77} {
		if h.exists(h.ks.Channel(id)) {
			t.Errorf("channel %d survived", id)
		}
	}
	if h.exists(h.ks.Role(g1 + 11)) {
		t.Error("role survived")
	}
	eq(t, "bob (only in g1) gone", h.exists(h.ks.User(43)), false)
	eq(t, "alice (also in g2) kept", h.exists(h.ks.User(42)), true)
	eq(t, "alice guilds", h.smembers(h.ks.UserGuilds(42)), strs(g2))
	eq(t, "users", h.smembers(h.ks.Users()), strs(42, bot))
	eq(t, "shard 0 guilds", h.smembers(h.ks.ShardGuilds(0)), []string{})
	eq(t, "shard 0 counts", h.hgetall(h.ks.ShardCounts(0)), map[string]string{})
	// g2 untouched.
	for k, v := range before {
		if strings.Contains(k, sf(g2)) && after[k] != v {
			t.Errorf("%s changed: %s -> %s", k, v, after[k])
		}
	}
	if _, err := h.r.Guild(h.ctx, g1); !errors.Is(err, ErrNotFound) {
		t.Errorf("Guild after delete: %v, want ErrNotFound", err)
	}
	if _, err := h.r.GuildChannels(h.ctx, g1); !errors.Is(err, ErrNotFound) {
		t.Errorf("GuildChannels after delete: %v, want ErrNotFound", err)
	}
}

func TestGuildCreateReplacesRelations(t *testing.T) {
	h := newHarness(t, nil)
	s := typicalGuild(g1)
	s.members = append(s.members, memberObj(userObj(42, "alice")))
	h.send(0, "GUILD_CREATE", guildCreate(s))
	h.send(0, "GUILD_DELETE", obj{"id": sf(g1), "unavailable": true})
	h.flush()
	// Back from the outage with a channel, a role and a member gone.
	s.channels = s.channels[:4]
	s.roles = s.roles[:5]
	s.members = s.members[:1]
	h.send(0, "GUILD_CREATE", guildCreate(s))
	h.flush()
	eq(t, "channels", h.smembers(h.ks.GuildChannels(g1)), strs(g1+1, g1+2, g1+3, g1+4))
	eq(t, "stale channel hash", h.exists(h.ks.Channel(g1+5)), false)
	eq(t, "stale role hash", h.exists(h.ks.Role(g1+15)), false)
	eq(t, "stale member", h.exists(h.ks.Member(g1, 42)), false)
	eq(t, "stale user", h.exists(h.ks.User(42)), false)
	eq(t, "counts", h.hgetall(h.ks.ShardCounts(0))[sf(g1)], "4,5,1")
}

func TestReadyPurgesWhatTheShardNoLongerOwns(t *testing.T) {
	h := newHarness(t, nil)
	const g3 uint64 = 661720242585800000
	h.send(0, "READY", readyObj(0, 1, g1, g2, g3))
	for _, g := range []uint64{g1, g2, g3} {
		s := typicalGuild(g)
		s.members = append(s.members, memberObj(userObj(g+50, "u")))
		h.send(0, "GUILD_CREATE", guildCreate(s))
	}
	h.flush()
	// The bot reshards to 2 shards: g3 now belongs to shard 1, whose
	// session already claimed it.
	h.send(1, "READY", readyObj(1, 2, g3))
	h.send(1, "GUILD_CREATE", guildCreate(typicalGuild(g3)))
	h.flush()
	// Shard 0's new session lists only g1: g2 left while the bot was away.
	h.send(0, "READY", readyObj(0, 2, g1))
	h.flush()

	eq(t, "shard 0 guilds", h.smembers(h.ks.ShardGuilds(0)), strs(g1))
	eq(t, "shard 0 unavailable", h.smembers(h.ks.ShardUnavailable(0)), strs(g1))
	eq(t, "g1 marked", h.hgetall(h.ks.Guild(g1))["unavailable"], "1")
	eq(t, "g1 data kept until its GUILD_CREATE", len(h.smembers(h.ks.GuildChannels(g1))), 5)
	eq(t, "g2 purged", h.exists(h.ks.Guild(g2)), false)
	eq(t, "g2 channels purged", h.exists(h.ks.Channel(g2+1)), false)
	eq(t, "g2 member purged", h.exists(h.ks.Member(g2, g2+50)), false)
	eq(t, "g2 user purged", h.exists(h.ks.User(g2+50)), false)
	eq(t, "g3 kept for shard 1", h.hgetall(h.ks.Guild(g3))["shard"], "1")
	eq(t, "g3 channels kept", len(h.smembers(h.ks.GuildChannels(g3))), 5)
	eq(t, "shard 1 guilds", h.smembers(h.ks.ShardGuilds(1)), strs(g3))
	_, stale := h.hgetall(h.ks.ShardCounts(0))[sf(g3)]
	eq(t, "g3 not counted on shard 0", stale, false)

	h.send(0, "GUILD_CREATE", guildCreate(typicalGuild(g1)))
	h.flush()
	eq(t, "shard 0 unavailable after create", h.smembers(h.ks.ShardUnavailable(0)), []string{})
}

func TestResumedPurgesNothing(t *testing.T) {
	h := newHarness(t, nil)
	h.send(0, "READY", readyObj(0, 1, g1))
	h.send(0, "GUILD_CREATE", guildCreate(typicalGuild(g1)))
	h.flush()
	before := h.snapshot()
	h.send(0, "RESUMED", obj{"_trace": []string{"fake"}})
	h.flush()
	eq(t, "projection", h.snapshot(), before)
}

func TestChannelsAndThreads(t *testing.T) {
	h := newHarness(t, nil)
	h.send(0, "GUILD_CREATE", guildCreate(typicalGuild(g1)))
	h.send(0, "CHANNEL_CREATE", obj{"id": "5", "type": 0, "guild_id": sf(g1), "name": "new", "position": 1, "topic": "t", "permission_overwrites": []any{}})
	h.send(0, "CHANNEL_UPDATE", obj{"id": "5", "type": 0, "guild_id": sf(g1), "name": "renamed", "position": 2, "parent_id": sf(g1 + 1)})
	h.send(0, "CHANNEL_DELETE", obj{"id": sf(g1 + 2), "type": 0, "guild_id": sf(g1)})
	h.send(0, "THREAD_CREATE", threadObj(77, g1, g1+1, 42, "t1"))
	h.send(0, "THREAD_CREATE", threadObj(78, g1, g1+1, 42, "t2"))
	h.send(0, "THREAD_CREATE", threadObj(79, g1, g1+3, 42, "t3"))
	archived := threadObj(78, g1, g1+1, 42, "t2")
	archived["thread_metadata"].(obj)["archived"] = true
	h.send(0, "THREAD_UPDATE", archived)
	h.send(0, "THREAD_DELETE", obj{"id": "77", "guild_id": sf(g1), "parent_id": sf(g1 + 1), "type": 11})
	// DM channels carry no guild and are not projected.
	h.send(0, "CHANNEL_CREATE", obj{"id": "9", "type": 1, "recipients": []any{userObj(42, "a")}})
	h.flush()

	eq(t, "channel 5", h.hgetall(h.ks.Channel(5)), map[string]string{
		"guild_id": sf(g1), "type": "0", "name": "renamed", "position": "2", "parent_id": sf(g1 + 1),
	})
	c, err := h.r.Channel(h.ctx, 78)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "thread", []any{c.Type, c.ParentID, c.OwnerID, c.Archived, c.GuildID}, []any{11, g1 + 1, uint64(42), true, g1})
	eq(t, "channels", h.smembers(h.ks.GuildChannels(g1)), strs(5, 78, 79, g1+1, g1+3, g1+4, g1+5))
	eq(t, "dm", h.exists(h.ks.Channel(9)), false)
	eq(t, "counts", h.hgetall(h.ks.ShardCounts(0))[sf(g1)], "7,6,1")

	// Sync of parent g1+1: only 80 is active there; 78 goes, 79 (other
	// parent) stays.
	h.send(0, "THREAD_LIST_SYNC", obj{"guild_id": sf(g1), "channel_ids": []string{sf(g1 + 1)},
		"threads": []obj{threadObj(80, g1, g1+1, 42, "t4")}, "members": []any{}})
	h.flush()
	eq(t, "after sync", h.smembers(h.ks.GuildChannels(g1)), strs(5, 79, 80, g1+1, g1+3, g1+4, g1+5))
	eq(t, "78 gone", h.exists(h.ks.Channel(78)), false)
	// A sync without channel_ids covers the whole guild.
	h.send(0, "THREAD_LIST_SYNC", obj{"guild_id": sf(g1), "threads": []obj{}, "members": []any{}})
	h.flush()
	eq(t, "after full sync", h.smembers(h.ks.GuildChannels(g1)), strs(5, g1+1, g1+3, g1+4, g1+5))
	eq(t, "counts after sync", h.hgetall(h.ks.ShardCounts(0))[sf(g1)], "5,6,1")
}

func TestRoles(t *testing.T) {
	h := newHarness(t, nil)
	h.send(0, "GUILD_CREATE", guildCreate(typicalGuild(g1)))
	h.send(0, "GUILD_ROLE_CREATE", obj{"guild_id": sf(g1), "role": roleObj(500, "mods", 7)})
	r := roleObj(500, "moderators", 8)
	r["color"] = 16711680
	h.send(0, "GUILD_ROLE_UPDATE", obj{"guild_id": sf(g1), "role": r})
	h.send(0, "GUILD_ROLE_DELETE", obj{"guild_id": sf(g1), "role_id": sf(g1 + 11)})
	h.flush()
	role, err := h.r.Role(h.ctx, 500)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "role", []any{role.Name, role.Position, role.Color, role.Permissions, role.GuildID},
		[]any{"moderators", 8, 16711680, uint64(1071698660929), g1})
	eq(t, "deleted", h.exists(h.ks.Role(g1+11)), false)
	ids, _ := h.r.GuildRoles(h.ctx, g1)
	eq(t, "roles", len(ids), 6)
}

func TestMembersAndUsers(t *testing.T) {
	h := newHarness(t, nil)
	h.send(0, "GUILD_CREATE", guildCreate(typicalGuild(g1)))
	h.send(1, "GUILD_CREATE", guildCreate(typicalGuild(g2)))
	alice := userObj(42, "alice")
	h.send(0, "GUILD_MEMBER_ADD", obj{"guild_id": sf(g1), "user": alice, "roles": []string{}, "joined_at": "2026-01-01T00:00:00Z", "deaf": false, "mute": false, "flags": 0})
	alice2 := userObj(42, "alice2")
	alice2["global_name"] = "Alice"
	h.send(0, "GUILD_MEMBER_UPDATE", obj{"guild_id": sf(g1), "user": alice2, "roles": []string{sf(g1 + 11), sf(g1 + 12)}, "nick": "al", "joined_at": "2026-01-01T00:00:00Z"})
	var chunk []obj
	for i := uint64(0); i < 50; i++ {
		chunk = append(chunk, memberObj(userObj(1000+i, "m")))
	}
	chunk = append(chunk, memberObj(alice2))
	h.send(1, "GUILD_MEMBERS_CHUNK", obj{"guild_id": sf(g2), "members": chunk, "chunk_index": 0, "chunk_count": 1, "not_found": []any{}})
	h.send(0, "USER_UPDATE", obj{"id": sf(bot), "username": "renamedbot", "discriminator": "0", "bot": true, "global_name": nil, "avatar": "a1"})
	h.flush()

	m, err := h.r.Member(h.ctx, g1, 42)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "member", []any{m.Nick, m.Roles, m.JoinedAt.Year()}, []any{"al", []uint64{g1 + 11, g1 + 12}, 2026})
	u, _ := h.r.User(h.ctx, 42)
	eq(t, "user", []any{u.Username, u.GlobalName}, []any{"alice2", "Alice"})
	eq(t, "alice guilds", h.smembers(h.ks.UserGuilds(42)), strs(g1, g2))
	b, _ := h.r.User(h.ctx, bot)
	eq(t, "bot", []any{b.Username, b.Avatar, b.Bot}, []any{"renamedbot", "a1", true})
	c, _ := h.r.ShardCounts(h.ctx, 1)
	eq(t, "shard 1 members", c.Members, int64(52))

	h.send(0, "GUILD_MEMBER_REMOVE", obj{"guild_id": sf(g1), "user": userObj(42, "alice2")})
	h.flush()
	eq(t, "member gone", h.exists(h.ks.Member(g1, 42)), false)
	eq(t, "user kept (still in g2)", h.exists(h.ks.User(42)), true)
	h.send(1, "GUILD_MEMBER_REMOVE", obj{"guild_id": sf(g2), "user": userObj(42, "alice2")})
	h.flush()
	eq(t, "user gone with last guild", h.exists(h.ks.User(42)), false)
	eq(t, "not in users", h.rdb.SIsMember(h.ctx, h.ks.Users(), "42").Val(), false)
	if _, err := h.r.User(h.ctx, 42); !errors.Is(err, ErrNotFound) {
		t.Errorf("User: %v, want ErrNotFound", err)
	}
}

func TestEmojisUpdateReplaces(t *testing.T) {
	h := newHarness(t, nil)
	s := typicalGuild(g1)
	s.emojis = []obj{{"id": "900", "name": "smile"}, {"id": "901", "name": "frown"}}
	h.send(0, "GUILD_CREATE", guildCreate(s))
	h.send(0, "GUILD_EMOJIS_UPDATE", obj{"guild_id": sf(g1), "emojis": []obj{{"id": "901", "name": "sad"}, {"id": "902", "name": "new"}}})
	h.flush()
	e, err := h.r.GuildEmojis(h.ctx, g1)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "emojis", e, map[uint64]string{901: "sad", 902: "new"})
}

func TestEventsForUnknownGuildsLeaveNoOrphans(t *testing.T) {
	h := newHarness(t, nil)
	h.send(0, "GUILD_CREATE", guildCreate(typicalGuild(g1)))
	h.send(0, "GUILD_DELETE", obj{"id": sf(g1)})
	// Late deltas of the deleted guild (an out-of-order replay).
	h.send(0, "CHANNEL_CREATE", obj{"id": "5", "type": 0, "guild_id": sf(g1), "name": "late"})
	h.send(0, "GUILD_MEMBER_ADD", obj{"guild_id": sf(g1), "user": userObj(42, "a"), "roles": []string{}, "joined_at": "2026-01-01T00:00:00Z"})
	h.send(0, "GUILD_ROLE_CREATE", obj{"guild_id": sf(g1), "role": roleObj(500, "r", 1)})
	h.send(0, "GUILD_UPDATE", obj{"id": sf(g1), "name": "ghost"})
	h.flush()
	snap := h.snapshot()
	delete(snap, h.ks.CacheSchema())
	if len(snap) != 0 {
		t.Errorf("orphans: %v", snap)
	}
}

func TestUnknownAndBadEvents(t *testing.T) {
	h := newHarness(t, nil)
	if !h.p.Enqueue(0, "MESSAGE_CREATE", []byte(`{"id":"1"}`)) {
		t.Fatal("ignored event reported as dropped")
	}
	h.send(0, "GUILD_CREATE", guildCreate(typicalGuild(g1)))
	h.p.Enqueue(0, "CHANNEL_CREATE", []byte(`{"id":"5","guild_id":"`+sf(g1)+`","name":`))
	h.send(0, "GUILD_ROLE_CREATE", obj{"guild_id": sf(g1), "role": roleObj(500, "after", 1)})
	h.flush()
	s := h.p.Stats()
	eq(t, "ignored", s.Ignored, uint64(1))
	eq(t, "bad", s.Bad, uint64(1))
	eq(t, "events", s.Events, uint64(3))
	eq(t, "written", s.Written, uint64(3))
	if !h.exists(h.ks.Role(500)) {
		t.Error("a bad payload stopped the batch")
	}
}

func TestQueueOverflowKeepsGuildCreates(t *testing.T) {
	// The writer waits for a batch of 1000 for an hour: nothing is written
	// until Flush, so the queue fills deterministically.
	h := newHarness(t, func(c *Config) { c.QueueSize = 3; c.BatchSize = 1000; c.FlushInterval = time.Hour })
	for i := 0; i < 3; i++ {
		if !h.p.Enqueue(0, "GUILD_UPDATE", []byte(`{"id":"1","name":"x"}`)) {
			t.Fatalf("event %d dropped below QueueSize", i)
		}
	}
	if h.p.Enqueue(0, "CHANNEL_CREATE", []byte(`{"id":"5","guild_id":"1"}`)) {
		t.Fatal("ordinary event accepted past QueueSize")
	}
	gc, _ := jsonBytes(guildCreate(typicalGuild(g1)))
	if !h.p.Enqueue(0, "GUILD_CREATE", gc) {
		t.Fatal("GUILD_CREATE dropped on a full queue")
	}
	eq(t, "drops", h.p.Stats().Drops, uint64(1))
	eq(t, "queued", h.p.Stats().Queued, 4)
	h.flush()
	if !h.exists(h.ks.Guild(g1)) {
		t.Error("guild not written")
	}
}

func TestQueueByteBound(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.MaxQueueBytes = 100; c.BatchSize = 1000; c.FlushInterval = time.Hour })
	gc, _ := jsonBytes(guildCreate(typicalGuild(g1)))
	if h.p.Enqueue(0, "GUILD_CREATE", gc) {
		t.Fatal("payload larger than MaxQueueBytes accepted")
	}
}

func TestConfiguredEntitiesAndFields(t *testing.T) {
	h := newHarness(t, func(c *Config) {
		c.Entities = []Entity{EntityGuild, EntityChannel}
		c.Fields = map[Entity][]string{
			EntityGuild:   {"name", "description"},
			EntityChannel: {"name", "topic", "permission_overwrites"},
		}
	})
	gc := guildCreate(typicalGuild(g1))
	gc["description"] = strings.Repeat("é", 40) // 80 bytes
	chans := gc["channels"].([]obj)
	chans[0]["topic"] = "short topic"
	chans[0]["permission_overwrites"] = []obj{{"id": sf(g1), "type": 0, "allow": "0", "deny": "1024"}}
	h.send(0, "GUILD_CREATE", gc)
	h.flush()
	g := h.hgetall(h.ks.Guild(g1))
	eq(t, "guild fields", g, map[string]string{"name": "Fake Guild " + sf(g1), "description": strings.Repeat("é", 32), "shard": "0"})
	eq(t, "channel", h.hgetall(h.ks.Channel(g1+1)), map[string]string{
		"guild_id": sf(g1), "name": "channel-1", "topic": "short topic", "permission_overwrites": sf(g1) + ":0:0:1024",
	})
	eq(t, "no roles", h.exists(h.ks.GuildRoles(g1)), false)
	eq(t, "no members", h.exists(h.ks.GuildMembers(g1)), false)
	eq(t, "no users", h.exists(h.ks.Users()), false)
	eq(t, "counts", h.hgetall(h.ks.ShardCounts(0))[sf(g1)], "5,0,0")
	sc, err := h.r.Schema(h.ctx)
	if err != nil {
		t.Fatal(err)
	}
	eq(t, "schema", sc, map[Entity][]string{EntityGuild: {"name", "description"}, EntityChannel: {"name", "topic", "permission_overwrites"}})
}

func TestConfigErrors(t *testing.T) {
	_, rdb := newMini(t)
	for name, c := range map[string]Config{
		"no redis":      {},
		"zero keys":     {Redis: rdb},
		"bad entity":    {Redis: rdb, Keys: testKeys, Entities: []Entity{"bogus"}},
		"bad field ent": {Redis: rdb, Keys: testKeys, Fields: map[Entity][]string{"bogus": nil}},
		"tiny values":   {Redis: rdb, Keys: testKeys, MaxValueBytes: 10},
	} {
		if _, err := NewProjector(c); !errors.Is(err, ErrInvalidConfig) {
			t.Errorf("%s: %v, want ErrInvalidConfig", name, err)
		}
	}
}

func TestCloseDrainsAndRefuses(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.FlushInterval = time.Hour; c.BatchSize = 1000 })
	h.send(0, "GUILD_CREATE", guildCreate(typicalGuild(g1)))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := h.p.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if !h.exists(h.ks.Guild(g1)) {
		t.Error("Close did not drain")
	}
	if h.p.Enqueue(0, "GUILD_CREATE", []byte(`{"id":"1"}`)) {
		t.Error("Enqueue accepted after Close")
	}
	if err := h.p.Flush(ctx); err != nil {
		t.Errorf("Flush after Close with nothing pending: %v", err)
	}
}

func TestRedisOutageIsRetried(t *testing.T) {
	h := newHarness(t, func(c *Config) { c.RetryBackoff = time.Millisecond })
	h.m.Close()
	h.send(0, "GUILD_CREATE", guildCreate(typicalGuild(g1)))
	testwait.For(t, 5*time.Second, "a retry", func() bool { return h.p.Stats().Retries > 0 })
	if err := h.m.Restart(); err != nil {
		t.Fatal(err)
	}
	h.flush()
	if !h.exists(h.ks.Guild(g1)) {
		t.Error("batch lost across the outage")
	}
}

func TestStatsCount(t *testing.T) {
	h := newHarness(t, nil)
	for i := uint64(0); i < 20; i++ {
		h.send(0, "GUILD_CREATE", guildCreate(typicalGuild(g1+i*1000)))
	}
	h.flush()
	s := h.p.Stats()
	eq(t, "written", s.Written, uint64(20))
	if s.Batches == 0 || s.Commands == 0 || s.MaxBatch <= 0 || s.AvgBatch <= 0 {
		t.Errorf("stats not counted: %+v", s)
	}
}

func TestMinimalPayloads(t *testing.T) {
	// Payloads with little more than their ids, GUILD_CREATE with only
	// one: disgo decodes them (checked below), so the projector must take
	// them too.
	h := newHarness(t, nil)
	for _, ev := range []struct {
		typ string
		d   obj
	}{
		{"GUILD_CREATE", obj{"id": sf(g1)}},
		{"GUILD_MEMBER_ADD", obj{"guild_id": sf(g1), "user": obj{"id": "5", "username": "x", "discriminator": "0"}, "roles": []string{}, "joined_at": "2026-01-01T00:00:00Z", "deaf": false, "mute": false, "flags": 0}},
		{"CHANNEL_CREATE", obj{"id": "7", "type": 0, "guild_id": sf(g1), "name": "new", "position": 1, "permission_overwrites": []any{}}},
	} {
		decodesWithDisgo(t, ev.typ, ev.d)
		h.send(2, ev.typ, ev.d)
	}
	h.flush()
	eq(t, "guild", h.hgetall(h.ks.Guild(g1)), map[string]string{"shard": "2"})
	eq(t, "counts", h.hgetall(h.ks.ShardCounts(2))[sf(g1)], "1,0,1")
	eq(t, "bad", h.p.Stats().Bad, uint64(0))
}
