package cache

import (
	"context"
	"encoding/json"
	"maps"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/disgoorg/disgo/gateway"
	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/keyspace"
)

// Payload builders: the shapes Discord sends, as its gateway documentation
// describes them (https://discord.com/developers/docs/events/gateway-events):
// snowflakes and permission sets as quoted strings
// (https://discord.com/developers/docs/reference#snowflakes), timestamps in
// ISO 8601. TestPayloadBuildersDecode checks that disgo decodes each of them.

type obj = map[string]any

func sf(n uint64) string { return strconv.FormatUint(n, 10) }

func userObj(id uint64, name string) obj {
	return obj{"id": sf(id), "username": name, "discriminator": "0", "global_name": nil, "avatar": nil, "bot": false}
}

func memberObj(user obj, roles ...uint64) obj {
	rs := make([]string, len(roles))
	for i, r := range roles {
		rs[i] = sf(r)
	}
	return obj{"user": user, "roles": rs, "nick": nil, "joined_at": "2024-01-01T00:00:00.000000+00:00",
		"deaf": false, "mute": false, "flags": 0, "pending": false, "premium_since": nil}
}

func channelObj(id uint64, typ int, name string, parent uint64) obj {
	o := obj{"id": sf(id), "type": typ, "name": name, "position": 0, "permission_overwrites": []any{},
		"nsfw": false, "parent_id": nil, "topic": nil, "last_message_id": nil, "rate_limit_per_user": 0}
	if parent != 0 {
		o["parent_id"] = sf(parent)
	}
	return o
}

func threadObj(id, guild, parent, owner uint64, name string) obj {
	return obj{"id": sf(id), "guild_id": sf(guild), "parent_id": sf(parent), "owner_id": sf(owner),
		"type": 11, "name": name, "last_message_id": nil, "message_count": 0, "member_count": 1,
		"rate_limit_per_user": 0, "flags": 0,
		"thread_metadata": obj{"archived": false, "auto_archive_duration": 1440, "archive_timestamp": "2026-01-01T00:00:00.000000+00:00", "locked": false}}
}

func roleObj(id uint64, name string, pos int) obj {
	return obj{"id": sf(id), "name": name, "permissions": "1071698660929", "position": pos, "color": 0,
		"hoist": false, "managed": false, "mentionable": false, "flags": 0, "icon": nil, "unicode_emoji": nil}
}

// guildSpec describes a guild for guildCreate.
type guildSpec struct {
	id       uint64
	name     string
	channels []obj
	threads  []obj
	roles    []obj
	members  []obj
	emojis   []obj
	features []string
}

func guildCreate(g guildSpec) obj {
	if g.features == nil {
		g.features = []string{}
	}
	if g.emojis == nil {
		g.emojis = []obj{}
	}
	if g.threads == nil {
		g.threads = []obj{}
	}
	return obj{"id": sf(g.id), "name": g.name, "icon": nil, "owner_id": sf(g.id + 100), "unavailable": false,
		"large": false, "member_count": len(g.members), "joined_at": "2024-01-01T00:00:00.000000+00:00",
		"features": g.features, "preferred_locale": "en-US", "afk_timeout": 300, "verification_level": 0,
		"default_message_notifications": 0, "explicit_content_filter": 0, "mfa_level": 0, "nsfw_level": 0,
		"premium_tier": 0, "system_channel_flags": 0, "description": nil,
		"roles": g.roles, "channels": g.channels, "threads": g.threads, "members": g.members,
		"emojis": g.emojis, "stickers": []any{}, "voice_states": []any{}, "presences": []any{},
		"stage_instances": []any{}, "guild_scheduled_events": []any{}, "soundboard_sounds": []any{}}
}

// typicalGuild is the realistic small form: 5 channels, 6 roles, 1 member.
func typicalGuild(id uint64) guildSpec {
	g := guildSpec{id: id, name: "Fake Guild " + sf(id)}
	for i := uint64(1); i <= 5; i++ {
		g.channels = append(g.channels, channelObj(id+i, 0, "channel-"+sf(i), 0))
	}
	g.roles = append(g.roles, roleObj(id, "@everyone", 0))
	for i := uint64(1); i <= 5; i++ {
		g.roles = append(g.roles, roleObj(id+10+i, "role-"+sf(i), int(i)))
	}
	g.members = append(g.members, memberObj(obj{"id": "1100000000000000001", "username": "fakebot", "discriminator": "0", "bot": true}))
	return g
}

func readyObj(shard, count int, guilds ...uint64) obj {
	gs := make([]obj, len(guilds))
	for i, g := range guilds {
		gs[i] = obj{"id": sf(g), "unavailable": true}
	}
	return obj{"v": 10, "user": obj{"id": "1100000000000000001", "username": "fakebot", "discriminator": "0", "bot": true},
		"guilds": gs, "session_id": "072da318c0db7b4a083f2e1f737cd2eb", "session_type": "normal",
		"resume_gateway_url": "ws://127.0.0.1:1/resume", "shard": []int{shard, count},
		"application": obj{"id": "1100000000000000001", "flags": 0}, "private_channels": []any{}, "_trace": []string{"fake"}}
}

// harness is a projector on miniredis.
type harness struct {
	t    *testing.T
	m    *miniredis.Miniredis
	rdb  redis.UniversalClient
	ks   keyspace.Keyspace
	p    *Projector
	r    *Reader
	ctx  context.Context
	conf Config
}

func newHarness(t *testing.T, mod func(*Config)) *harness {
	t.Helper()
	m, rdb := testredis.Mini(t)
	return newHarnessOn(t, m, rdb, keyspace.MustNew("test"), mod)
}

func newHarnessOn(t *testing.T, m *miniredis.Miniredis, rdb redis.UniversalClient, ks keyspace.Keyspace, mod func(*Config)) *harness {
	t.Helper()
	cfg := Config{Redis: rdb, Keys: ks, FlushInterval: -1}
	if mod != nil {
		mod(&cfg)
	}
	p, err := NewProjector(cfg)
	if err != nil {
		t.Fatalf("NewProjector: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = p.Close(ctx)
	})
	return &harness{t: t, m: m, rdb: rdb, ks: ks, p: p, r: NewReader(rdb, ks), ctx: context.Background(), conf: cfg}
}

// send enqueues one event.
func (h *harness) send(shard int, typ string, d any) {
	h.t.Helper()
	b, err := json.Marshal(d)
	if err != nil {
		h.t.Fatal(err)
	}
	if !h.p.Enqueue(shard, typ, b) {
		h.t.Fatalf("Enqueue(%s) dropped", typ)
	}
}

func (h *harness) flush() {
	h.t.Helper()
	ctx, cancel := context.WithTimeout(h.ctx, 10*time.Second)
	defer cancel()
	if err := h.p.Flush(ctx); err != nil {
		h.t.Fatalf("Flush: %v", err)
	}
}

func (h *harness) hgetall(key string) map[string]string {
	h.t.Helper()
	m, err := h.rdb.HGetAll(h.ctx, key).Result()
	if err != nil {
		h.t.Fatal(err)
	}
	return m
}

func (h *harness) smembers(key string) []string {
	h.t.Helper()
	m, err := h.rdb.SMembers(h.ctx, key).Result()
	if err != nil {
		h.t.Fatal(err)
	}
	sort.Strings(m)
	return m
}

func (h *harness) exists(key string) bool {
	h.t.Helper()
	n, err := h.rdb.Exists(h.ctx, key).Result()
	if err != nil {
		h.t.Fatal(err)
	}
	return n == 1
}

// snapshot dumps every key of the namespace with its content.
func (h *harness) snapshot() map[string]string {
	h.t.Helper()
	out := map[string]string{}
	iter := h.rdb.Scan(h.ctx, 0, h.ks.Base()+"*", 1000).Iterator()
	for iter.Next(h.ctx) {
		k := iter.Val()
		typ := h.rdb.Type(h.ctx, k).Val()
		var v any
		switch typ {
		case "hash":
			v = h.hgetall(k)
		case "set":
			v = h.smembers(k)
		default:
			v = typ
		}
		b, _ := json.Marshal(v)
		out[k] = string(b)
	}
	if err := iter.Err(); err != nil {
		h.t.Fatal(err)
	}
	return out
}

func strs(ids ...uint64) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = sf(id)
	}
	sort.Strings(out)
	return out
}

var testKeys = keyspace.MustNew("test")

func jsonBytes(v any) ([]byte, error) { return json.Marshal(v) }

func newMini(t testing.TB) (*miniredis.Miniredis, redis.UniversalClient) {
	t.Helper()
	return testredis.Mini(t)
}

// decodesWithDisgo fails t unless disgo decodes d as a dispatch of type typ.
func decodesWithDisgo(t *testing.T, typ string, d any) {
	t.Helper()
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := gateway.UnmarshalEventData(b, gateway.EventType(typ)); err != nil {
		t.Errorf("disgo rejects %s %s: %v", typ, b, err)
	}
}

// TestPayloadBuildersDecode keeps the builders above honest: every payload
// the tests send is one disgo decodes.
func TestPayloadBuildersDecode(t *testing.T) {
	user := userObj(bot+5, "user")
	withGuild := func(o obj) obj {
		o = maps.Clone(o)
		o["guild_id"] = sf(g1)
		return o
	}
	full := typicalGuild(g1)
	full.threads = []obj{threadObj(g1+50, g1, g1+1, bot, "thread")}
	full.members = append(full.members, memberObj(user, g1+11))
	full.features = []string{"COMMUNITY"}
	for _, tc := range []struct {
		name, typ string
		d         obj
	}{
		{"ready", "READY", readyObj(0, 1, g1)},
		{"typical guild", "GUILD_CREATE", guildCreate(typicalGuild(g1))},
		{"guild with threads", "GUILD_CREATE", guildCreate(full)},
		{"text channel", "CHANNEL_CREATE", withGuild(channelObj(g1+60, 0, "text", 0))},
		{"voice channel", "CHANNEL_CREATE", withGuild(channelObj(g1+61, 2, "voice", g1+1))},
		{"thread", "THREAD_CREATE", threadObj(g1+50, g1, g1+1, bot, "thread")},
		{"member", "GUILD_MEMBER_ADD", withGuild(memberObj(user, g1+11))},
		{"role", "GUILD_ROLE_CREATE", obj{"guild_id": sf(g1), "role": roleObj(g1+20, "new", 7)}},
	} {
		t.Run(tc.name, func(t *testing.T) { decodesWithDisgo(t, tc.typ, tc.d) })
	}
}
