package e2e

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/disgoorg/snowflake/v2"
	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/discordtest"
	"github.com/megane-go/megane/keyspace"
)

// The key layout is an API (redis-cli users, other languages, the CLI), so
// the projection is checked with raw HGETALL and SMEMBERS on the keys
// package keyspace builds, against the fake's world.

// projectionChecker queues raw reads in one pipeline and compares them with
// what the world says once it ran.
type projectionChecker struct {
	ctx      context.Context
	pipe     redis.Pipeliner
	checks   []func()
	problems []string
}

func newChecker(ctx context.Context, rdb redis.UniversalClient) *projectionChecker {
	return &projectionChecker{ctx: ctx, pipe: rdb.Pipeline()}
}

func (c *projectionChecker) bad(format string, args ...any) {
	if len(c.problems) < 25 {
		c.problems = append(c.problems, fmt.Sprintf(format, args...))
	}
}

// hash queues HGETALL key: the hash must exist, hold want exactly for its
// keys, lack every field in absent, and pass extra.
func (c *projectionChecker) hash(key string, want map[string]string, absent []string, extra func(got map[string]string)) {
	cmd := c.pipe.HGetAll(c.ctx, key)
	c.checks = append(c.checks, func() {
		got := cmd.Val()
		if len(got) == 0 {
			c.bad("HGETALL %s: missing", key)
			return
		}
		for f, v := range want {
			if got[f] != v {
				c.bad("HGETALL %s: %s = %q, want %q", key, f, got[f], v)
			}
		}
		for _, f := range absent {
			if v, ok := got[f]; ok {
				c.bad("HGETALL %s: %s = %q, want no such field", key, f, v)
			}
		}
		if extra != nil {
			extra(got)
		}
	})
}

// set queues SMEMBERS key, which must equal want.
func (c *projectionChecker) set(key string, want []string) {
	cmd := c.pipe.SMembers(c.ctx, key)
	c.checks = append(c.checks, func() {
		if got := cmd.Val(); !sameSet(got, want) {
			c.bad("SMEMBERS %s = %s, want %s", key, summary(got), summary(want))
		}
	})
}

// fieldMap queues HGETALL key, which must equal want (every field).
func (c *projectionChecker) fieldMap(key string, want map[string]string) {
	cmd := c.pipe.HGetAll(c.ctx, key)
	c.checks = append(c.checks, func() {
		got := cmd.Val()
		if len(got) != len(want) {
			c.bad("HGETALL %s: %d fields, want %d", key, len(got), len(want))
		}
		for f, v := range want {
			if got[f] != v {
				c.bad("HGETALL %s: %s = %q, want %q", key, f, got[f], v)
			}
		}
	})
}

// absentKey queues EXISTS key, which must be 0.
func (c *projectionChecker) absentKey(key string) {
	cmd := c.pipe.Exists(c.ctx, key)
	c.checks = append(c.checks, func() {
		if cmd.Val() != 0 {
			c.bad("EXISTS %s = 1, want the key gone", key)
		}
	})
}

func (c *projectionChecker) run() []string {
	if _, err := c.pipe.Exec(c.ctx); err != nil && err != redis.Nil {
		return []string{"pipeline: " + err.Error()}
	}
	for _, f := range c.checks {
		f()
	}
	return c.problems
}

func sf(id snowflake.ID) string { return strconv.FormatUint(uint64(id), 10) }

func b01(b bool) string {
	if b {
		return "1"
	}
	return "0"
}

func sameSet(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	x, y := slices.Clone(a), slices.Clone(b)
	slices.Sort(x)
	slices.Sort(y)
	return slices.Equal(x, y)
}

func summary(s []string) string {
	if len(s) > 6 {
		return fmt.Sprintf("%v… (%d)", s[:6], len(s))
	}
	return fmt.Sprint(s)
}

// sameTime checks a stored Discord timestamp.
func (c *projectionChecker) sameTime(key, field, got string, want time.Time) {
	at, err := time.Parse(time.RFC3339Nano, got)
	if err != nil || !at.Equal(want) {
		c.bad("HGETALL %s: %s = %q, want %s", key, field, got, want.Format(time.RFC3339Nano))
	}
}

// checkOptions tunes checkProjection.
type checkOptions struct {
	// memberCount compares the guild's member_count, which only
	// GUILD_CREATE sets (member events do not change it, as on Discord).
	memberCount bool
}

// checkProjection compares every guild, channel, role, member and user of
// the world, and every relation set, with Redis; it returns the problems
// (at most 25).
func checkProjection(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace, w *discordtest.World, shardCount int, o checkOptions) []string {
	c := newChecker(ctx, rdb)
	userGuilds := map[snowflake.ID][]string{}
	shardGuilds := make([][]string, shardCount)
	shardCounts := make([]map[string]string, shardCount)
	for i := range shardCounts {
		shardCounts[i] = map[string]string{}
	}
	for gi := range w.Guilds {
		g := &w.Guilds[gi]
		gid := uint64(g.ID)
		shard := discordtest.ShardFor(g.ID, shardCount)
		shardGuilds[shard] = append(shardGuilds[shard], sf(g.ID))
		shardCounts[shard][sf(g.ID)] = fmt.Sprintf("%d,%d,%d", len(g.Channels), len(g.Roles), len(g.Members))

		want := map[string]string{"name": g.Name, "owner_id": sf(g.OwnerID), "shard": strconv.Itoa(shard)}
		if o.memberCount {
			want["member_count"] = strconv.Itoa(len(g.Members))
		}
		key := ks.Guild(gid)
		c.hash(key, want, []string{"unavailable"}, func(got map[string]string) {
			c.sameTime(key, "joined_at", got["joined_at"], g.JoinedAt)
		})

		var chans, roles, members []string
		for _, ch := range g.Channels {
			chans = append(chans, sf(ch.ID))
			want := map[string]string{
				"guild_id": sf(g.ID), "type": strconv.Itoa(ch.Type), "name": ch.Name, "position": strconv.Itoa(ch.Position),
			}
			var absent []string
			if ch.ParentID != 0 {
				want["parent_id"] = sf(ch.ParentID)
			} else {
				absent = append(absent, "parent_id")
			}
			c.hash(ks.Channel(uint64(ch.ID)), want, absent, nil)
		}
		for _, r := range g.Roles {
			roles = append(roles, sf(r.ID))
			c.hash(ks.Role(uint64(r.ID)), map[string]string{
				"guild_id": sf(g.ID), "name": r.Name, "color": strconv.Itoa(r.Color), "position": strconv.Itoa(r.Position),
				"permissions": strconv.FormatUint(r.Permissions, 10), "hoist": b01(r.Hoist), "mentionable": b01(r.Mentionable),
			}, nil, nil)
		}
		for _, m := range g.Members {
			members = append(members, sf(m.UserID))
			userGuilds[m.UserID] = append(userGuilds[m.UserID], sf(g.ID))
			want := map[string]string{}
			var absent []string
			if m.Nick != "" {
				want["nick"] = m.Nick
			} else {
				absent = append(absent, "nick")
			}
			mkey := ks.Member(gid, uint64(m.UserID))
			c.hash(mkey, want, absent, func(got map[string]string) {
				var roles []string
				if got["roles"] != "" {
					roles = strings.Split(got["roles"], ",")
				}
				wantRoles := make([]string, 0, len(m.Roles))
				for _, r := range m.Roles {
					wantRoles = append(wantRoles, sf(r))
				}
				if !sameSet(roles, wantRoles) {
					c.bad("HGETALL %s: roles = %q, want %v", mkey, got["roles"], wantRoles)
				}
				c.sameTime(mkey, "joined_at", got["joined_at"], m.JoinedAt)
			})
		}
		c.set(ks.GuildChannels(gid), chans)
		c.set(ks.GuildRoles(gid), roles)
		c.set(ks.GuildMembers(gid), members)
	}
	var users []string
	for uid, guilds := range userGuilds {
		users = append(users, sf(uid))
		c.set(ks.UserGuilds(uint64(uid)), guilds)
		u, ok := w.User(uid)
		if !ok {
			c.bad("world: no user %s", uid)
			continue
		}
		// Discord leaves "bot" out for people, so the hash has no such field.
		want := map[string]string{"username": u.Username}
		var absent []string
		if u.Bot {
			want["bot"] = "1"
		} else {
			absent = append(absent, "bot")
		}
		if u.GlobalName != "" {
			want["global_name"] = u.GlobalName
		}
		c.hash(ks.User(uint64(uid)), want, absent, nil)
	}
	c.set(ks.Users(), users)
	for s := range shardCount {
		c.set(ks.ShardGuilds(s), shardGuilds[s])
		c.set(ks.ShardUnavailable(s), nil)
		c.fieldMap(ks.ShardCounts(s), shardCounts[s])
	}
	return c.run()
}

// goneGuild checks that nothing of guild g (as the world had it before it
// was left) is in Redis, except users that are still members elsewhere.
func goneGuild(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace, g discordtest.Guild) []string {
	c := newChecker(ctx, rdb)
	gid := uint64(g.ID)
	for _, k := range []string{ks.Guild(gid), ks.GuildChannels(gid), ks.GuildRoles(gid), ks.GuildMembers(gid), ks.GuildEmojis(gid)} {
		c.absentKey(k)
	}
	for _, ch := range g.Channels {
		c.absentKey(ks.Channel(uint64(ch.ID)))
	}
	for _, r := range g.Roles {
		c.absentKey(ks.Role(uint64(r.ID)))
	}
	for _, m := range g.Members {
		c.absentKey(ks.Member(gid, uint64(m.UserID)))
	}
	return c.run()
}

// keysMentioning lists the namespace's keys whose name contains id, with
// SCAN (which the projection itself never needs).
func keysMentioning(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace, id snowflake.ID) []string {
	var out []string
	iter := rdb.Scan(ctx, 0, ks.Base()+"*", 1000).Iterator()
	for iter.Next(ctx) {
		if strings.Contains(iter.Val(), sf(id)) {
			out = append(out, iter.Val())
		}
	}
	return out
}
