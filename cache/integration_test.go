package cache

import (
	"context"
	"errors"
	"strings"
	"sync"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/internal/testredis"
)

// The key layout is an API: redis-cli users, the CLI and other languages
// read it directly. This test pins it on a real redis-server, including the
// encodings that keep memory low.
func TestIntegrationRawLayout(t *testing.T) { testredis.EachBackend(t, testIntegrationRawLayout) }

func testIntegrationRawLayout(t *testing.T) {
	rdb, ks := testredis.Real(t)
	h := newHarnessOn(t, nil, rdb, ks, nil)
	ctx := context.Background()

	spec := typicalGuild(g1)
	spec.features = []string{"COMMUNITY", "NEWS", "INVITE_SPLASH", "ANIMATED_ICON", "BANNER", "ROLE_ICONS"}
	spec.members = append(spec.members, memberObj(userObj(42, "alice"), g1+11, g1+12))
	spec.emojis = []obj{{"id": "900", "name": "smile"}}
	spec.threads = []obj{threadObj(77, g1, g1+1, 42, "a thread")}
	h.send(0, "READY", readyObj(0, 1, g1, g2))
	h.send(0, "GUILD_CREATE", guildCreate(spec))
	h.flush()

	raw := func(args ...any) any {
		t.Helper()
		v, err := rdb.Do(ctx, args...).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			t.Fatalf("%v: %v", args, err)
		}
		return v
	}
	hgetall := func(key string) map[string]string {
		t.Helper()
		v := raw("HGETALL", key)
		m := map[string]string{}
		switch x := v.(type) {
		case []any: // RESP2
			for i := 0; i+1 < len(x); i += 2 {
				m[x[i].(string)] = x[i+1].(string)
			}
		case map[any]any: // RESP3
			for k, v := range x {
				m[k.(string)] = v.(string)
			}
		}
		return m
	}
	p := "megane:" + ks.Namespace() + ":"
	eq(t, "HGETALL guild", hgetall(p+"guild:"+sf(g1)), map[string]string{
		"name": "Fake Guild " + sf(g1), "owner_id": sf(g1 + 100), "member_count": "2", "large": "0",
		"features": "1118258", "preferred_locale": "en-US", "premium_tier": "0", "verification_level": "0",
		"nsfw_level": "0", "joined_at": "2024-01-01T00:00:00.000000+00:00", "shard": "0",
	})
	eq(t, "HGETALL unavailable guild", hgetall(p+"guild:"+sf(g2)), map[string]string{"unavailable": "1", "shard": "0"})
	eq(t, "HGETALL channel", hgetall(p+"channel:"+sf(g1+1)), map[string]string{
		"guild_id": sf(g1), "type": "0", "name": "channel-1", "position": "0", "nsfw": "0", "rate_limit_per_user": "0",
	})
	eq(t, "HGETALL thread", hgetall(p+"channel:77"), map[string]string{
		"guild_id": sf(g1), "type": "11", "name": "a thread", "parent_id": sf(g1 + 1), "owner_id": "42",
		"rate_limit_per_user": "0", "archived": "0", "locked": "0",
	})
	eq(t, "HGETALL role", hgetall(p+"role:"+sf(g1+11)), map[string]string{
		"guild_id": sf(g1), "name": "role-1", "permissions": "1071698660929", "position": "1", "color": "0",
		"hoist": "0", "managed": "0", "mentionable": "0",
	})
	eq(t, "HGETALL member", hgetall(p+"member:"+sf(g1)+":42"), map[string]string{
		"roles": sf(g1+11) + "," + sf(g1+12), "joined_at": "2024-01-01T00:00:00.000000+00:00", "pending": "0",
	})
	eq(t, "HGETALL user", hgetall(p+"user:42"), map[string]string{"username": "alice", "discriminator": "0", "bot": "0"})
	eq(t, "HGETALL emojis", hgetall(p+"guild:"+sf(g1)+":emojis"), map[string]string{"900": "smile"})
	eq(t, "HGETALL shard counts", hgetall(p+"shard:0:counts"), map[string]string{sf(g1): "6,6,2"})

	smembers := func(key string) []string {
		t.Helper()
		return h.smembers(key)
	}
	eq(t, "SMEMBERS channels", smembers(p+"guild:"+sf(g1)+":channels"), strs(g1+1, g1+2, g1+3, g1+4, g1+5, 77))
	eq(t, "SMEMBERS roles", smembers(p+"guild:"+sf(g1)+":roles"), strs(g1, g1+11, g1+12, g1+13, g1+14, g1+15))
	eq(t, "SMEMBERS members", smembers(p+"guild:"+sf(g1)+":members"), strs(42, bot))
	eq(t, "SMEMBERS user guilds", smembers(p+"user:42:guilds"), strs(g1))
	eq(t, "SMEMBERS users", smembers(p+"users"), strs(42, bot))
	eq(t, "SMEMBERS shard guilds", smembers(p+"shard:0:guilds"), strs(g1, g2))
	eq(t, "SMEMBERS shard unavailable", smembers(p+"shard:0:unavailable"), strs(g2))
	if s := hgetall(p + "cache:schema"); s["guild"] == "" || s["member"] == "" {
		t.Errorf("schema = %v", s)
	}

	// Memory: every projected hash stays in the compact encoding.
	for _, k := range []string{p + "guild:" + sf(g1), p + "channel:" + sf(g1+1), p + "channel:77",
		p + "role:" + sf(g1), p + "member:" + sf(g1) + ":42", p + "user:42"} {
		if enc := raw("OBJECT", "ENCODING", k); enc != "listpack" && enc != "ziplist" {
			t.Errorf("OBJECT ENCODING %s = %v, want listpack", k, enc)
		}
	}
	if n, _ := raw("MEMORY", "USAGE", p+"guild:"+sf(g1)).(int64); n == 0 || n > 500 {
		t.Errorf("MEMORY USAGE guild = %d bytes, want <= 500", n)
	}

	// Delete: nothing of g1 survives (checked with SCAN, which the
	// projection itself never needs).
	h.send(0, "GUILD_DELETE", obj{"id": sf(g1)})
	h.flush()
	iter := rdb.Scan(ctx, 0, p+"*", 1000).Iterator()
	for iter.Next(ctx) {
		k := iter.Val()
		if strings.Contains(k, sf(g1)) || strings.HasSuffix(k, ":42") || strings.Contains(k, "channel:") ||
			strings.Contains(k, "role:") || strings.Contains(k, "user:42") {
			t.Errorf("key %s survived the delete", k)
		}
	}
	eq(t, "users after delete", smembers(p+"users"), []string{})
}

// Every command the projector and reader send must be single-key (or carry
// no key), so a Redis Cluster client can route each one: no KEYS, no SCAN,
// no multi-key DEL/EXISTS across slots, no MULTI.
func TestCommandsAreClusterSafe(t *testing.T) {
	m, rdb := newMini(t)
	rec := &cmdRecorder{}
	rdb.AddHook(rec)
	h := newHarnessOn(t, m, rdb, testKeys, nil)
	h.send(0, "READY", readyObj(0, 1, g1, g2))
	s := typicalGuild(g1)
	s.members = append(s.members, memberObj(userObj(42, "alice")))
	h.send(0, "GUILD_CREATE", guildCreate(s))
	h.send(0, "GUILD_CREATE", guildCreate(typicalGuild(g2)))
	h.send(0, "CHANNEL_CREATE", obj{"id": "5", "type": 0, "guild_id": sf(g1), "name": "new"})
	h.send(0, "THREAD_LIST_SYNC", obj{"guild_id": sf(g1), "threads": []obj{}})
	h.send(0, "GUILD_MEMBER_REMOVE", obj{"guild_id": sf(g1), "user": userObj(42, "a")})
	h.send(0, "GUILD_DELETE", obj{"id": sf(g2)})
	h.send(0, "READY", readyObj(0, 1))
	h.flush()
	h.rdb.HSet(h.ctx, h.ks.ShardMap(), "shard_count", "1", "0", "0")
	_, _ = h.r.TotalCounts(h.ctx)
	_, _ = h.r.ClusterCounts(h.ctx, 0)
	f, _ := NewFetcher(FetcherConfig{Redis: rdb, Keys: testKeys, Requester: &fakeIPC{}})
	_, _ = f.FetchUsers(h.ctx, []uint64{42, 43})
	_, _ = f.FetchGuilds(h.ctx, []uint64{g1, g2})

	singleKey := map[string]bool{
		"hset": true, "hdel": true, "hgetall": true, "hget": true, "hmget": true, "hvals": true,
		"sadd": true, "srem": true, "smembers": true, "scard": true, "srandmember": true,
		"del": true, "exists": true,
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	if len(rec.cmds) < 20 {
		t.Fatalf("recorded only %d commands", len(rec.cmds))
	}
	for _, c := range rec.cmds {
		name := strings.ToLower(c.Name())
		switch {
		case name == "hello" || name == "client" || name == "ping" || name == "select":
		case !singleKey[name]:
			t.Errorf("command %v is not a single-key command", c.Args())
		case (name == "del" || name == "exists") && len(c.Args()) != 2:
			t.Errorf("multi-key %v", c.Args())
		}
	}
}

type cmdRecorder struct {
	mu   sync.Mutex
	cmds []redis.Cmder
}

func (r *cmdRecorder) DialHook(next redis.DialHook) redis.DialHook { return next }

func (r *cmdRecorder) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		r.mu.Lock()
		r.cmds = append(r.cmds, cmd)
		r.mu.Unlock()
		return next(ctx, cmd)
	}
}

func (r *cmdRecorder) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		r.mu.Lock()
		r.cmds = append(r.cmds, cmds...)
		r.mu.Unlock()
		return next(ctx, cmds)
	}
}
