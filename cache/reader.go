package cache

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/shardmap"
)

// ErrNotFound is returned (wrapped) when the projection holds no such entity.
var ErrNotFound = errors.New("cache: not found")

// Reader reads the projection. It holds no state beyond its client, so
// clusters, services and the CLI can each make one; it is safe for
// concurrent use.
type Reader struct {
	rdb  redis.UniversalClient
	keys keyspace.Keyspace
}

// NewReader returns a Reader of the projection in keys.
func NewReader(rdb redis.UniversalClient, keys keyspace.Keyspace) *Reader {
	return &Reader{rdb: rdb, keys: keys}
}

func (r *Reader) hash(ctx context.Context, key, what string, id uint64) (map[string]string, error) {
	m, err := r.rdb.HGetAll(ctx, key).Result()
	if err != nil {
		return nil, fmt.Errorf("cache: %s %d: %w", what, id, err)
	}
	if len(m) == 0 {
		return nil, fmt.Errorf("cache: %s %d: %w", what, id, ErrNotFound)
	}
	return m, nil
}

// hashes reads several hashes in one pipeline; absent ones are nil.
func (r *Reader) hashes(ctx context.Context, keys []string) ([]map[string]string, error) {
	pipe := r.rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(keys))
	for i, k := range keys {
		cmds[i] = pipe.HGetAll(ctx, k)
	}
	if len(keys) > 0 {
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("cache: read: %w", err)
		}
	}
	out := make([]map[string]string, len(keys))
	for i, c := range cmds {
		if m := c.Val(); len(m) > 0 {
			out[i] = m
		}
	}
	return out, nil
}

// Guild returns guild id.
func (r *Reader) Guild(ctx context.Context, id uint64) (Guild, error) {
	m, err := r.hash(ctx, r.keys.Guild(id), "guild", id)
	if err != nil {
		return Guild{}, err
	}
	return guildFrom(id, m), nil
}

// Channel returns channel (or thread) id.
func (r *Reader) Channel(ctx context.Context, id uint64) (Channel, error) {
	m, err := r.hash(ctx, r.keys.Channel(id), "channel", id)
	if err != nil {
		return Channel{}, err
	}
	return channelFrom(id, m), nil
}

// Role returns role id.
func (r *Reader) Role(ctx context.Context, id uint64) (Role, error) {
	m, err := r.hash(ctx, r.keys.Role(id), "role", id)
	if err != nil {
		return Role{}, err
	}
	return roleFrom(id, m), nil
}

// User returns user id.
func (r *Reader) User(ctx context.Context, id uint64) (User, error) {
	m, err := r.hash(ctx, r.keys.User(id), "user", id)
	if err != nil {
		return User{}, err
	}
	return userFrom(id, m), nil
}

// Member returns user's membership of guild.
func (r *Reader) Member(ctx context.Context, guild, user uint64) (Member, error) {
	m, err := r.hash(ctx, r.keys.Member(guild, user), "member of guild "+strconv.FormatUint(guild, 10)+": user", user)
	if err != nil {
		return Member{}, err
	}
	return memberFrom(guild, user, m), nil
}

// Guilds returns the guilds of ids that are projected, in the order of ids.
func (r *Reader) Guilds(ctx context.Context, ids []uint64) ([]Guild, error) {
	ms, err := r.hashes(ctx, mapKeys(ids, r.keys.Guild))
	out := make([]Guild, 0, len(ids))
	for i, m := range ms {
		if m != nil {
			out = append(out, guildFrom(ids[i], m))
		}
	}
	return out, err
}

// Channels returns the channels of ids that are projected, in the order of ids.
func (r *Reader) Channels(ctx context.Context, ids []uint64) ([]Channel, error) {
	ms, err := r.hashes(ctx, mapKeys(ids, r.keys.Channel))
	out := make([]Channel, 0, len(ids))
	for i, m := range ms {
		if m != nil {
			out = append(out, channelFrom(ids[i], m))
		}
	}
	return out, err
}

// Roles returns the roles of ids that are projected, in the order of ids.
func (r *Reader) Roles(ctx context.Context, ids []uint64) ([]Role, error) {
	ms, err := r.hashes(ctx, mapKeys(ids, r.keys.Role))
	out := make([]Role, 0, len(ids))
	for i, m := range ms {
		if m != nil {
			out = append(out, roleFrom(ids[i], m))
		}
	}
	return out, err
}

// Users returns the users of ids that are projected, in the order of ids.
func (r *Reader) Users(ctx context.Context, ids []uint64) ([]User, error) {
	ms, err := r.hashes(ctx, mapKeys(ids, r.keys.User))
	out := make([]User, 0, len(ids))
	for i, m := range ms {
		if m != nil {
			out = append(out, userFrom(ids[i], m))
		}
	}
	return out, err
}

// Members returns the memberships of users in guild that are projected.
func (r *Reader) Members(ctx context.Context, guild uint64, users []uint64) ([]Member, error) {
	ms, err := r.hashes(ctx, mapKeys(users, func(u uint64) string { return r.keys.Member(guild, u) }))
	out := make([]Member, 0, len(users))
	for i, m := range ms {
		if m != nil {
			out = append(out, memberFrom(guild, users[i], m))
		}
	}
	return out, err
}

func mapKeys(ids []uint64, key func(uint64) string) []string {
	ks := make([]string, len(ids))
	for i, id := range ids {
		ks[i] = key(id)
	}
	return ks
}

// guildSet reads a relation set of guild, ErrNotFound when the guild is not
// projected (an empty set alone cannot tell).
func (r *Reader) guildSet(ctx context.Context, guild uint64, key string) ([]uint64, error) {
	pipe := r.rdb.Pipeline()
	ex := pipe.Exists(ctx, r.keys.Guild(guild))
	sm := pipe.SMembers(ctx, key)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("cache: guild %d: %w", guild, err)
	}
	if ex.Val() == 0 {
		return nil, fmt.Errorf("cache: guild %d: %w", guild, ErrNotFound)
	}
	return parseIDs(sm.Val()), nil
}

func parseIDs(ss []string) []uint64 {
	out := make([]uint64, 0, len(ss))
	for _, s := range ss {
		if n, err := strconv.ParseUint(s, 10, 64); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// GuildChannels returns the ids of guild's channels and threads (unordered).
func (r *Reader) GuildChannels(ctx context.Context, guild uint64) ([]uint64, error) {
	return r.guildSet(ctx, guild, r.keys.GuildChannels(guild))
}

// GuildRoles returns the ids of guild's roles (unordered).
func (r *Reader) GuildRoles(ctx context.Context, guild uint64) ([]uint64, error) {
	return r.guildSet(ctx, guild, r.keys.GuildRoles(guild))
}

// GuildMembers returns the ids of guild's cached members (unordered). Use
// SSCAN on keyspace GuildMembers for very large guilds.
func (r *Reader) GuildMembers(ctx context.Context, guild uint64) ([]uint64, error) {
	return r.guildSet(ctx, guild, r.keys.GuildMembers(guild))
}

// GuildEmojis returns guild's emojis, id -> name.
func (r *Reader) GuildEmojis(ctx context.Context, guild uint64) (map[uint64]string, error) {
	pipe := r.rdb.Pipeline()
	ex := pipe.Exists(ctx, r.keys.Guild(guild))
	hm := pipe.HGetAll(ctx, r.keys.GuildEmojis(guild))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("cache: guild %d: %w", guild, err)
	}
	if ex.Val() == 0 {
		return nil, fmt.Errorf("cache: guild %d: %w", guild, ErrNotFound)
	}
	out := make(map[uint64]string, len(hm.Val()))
	for k, v := range hm.Val() {
		if n, err := strconv.ParseUint(k, 10, 64); err == nil {
			out[n] = v
		}
	}
	return out, nil
}

// UserGuilds returns the ids of the cached guilds user is a member of.
func (r *Reader) UserGuilds(ctx context.Context, user uint64) ([]uint64, error) {
	ids, err := r.rdb.SMembers(ctx, r.keys.UserGuilds(user)).Result()
	if err != nil {
		return nil, fmt.Errorf("cache: user %d guilds: %w", user, err)
	}
	return parseIDs(ids), nil
}

// ShardGuilds returns the ids of the guilds shard owns, unavailable ones included.
func (r *Reader) ShardGuilds(ctx context.Context, shard int) ([]uint64, error) {
	ids, err := r.rdb.SMembers(ctx, r.keys.ShardGuilds(shard)).Result()
	if err != nil {
		return nil, fmt.Errorf("cache: shard %d guilds: %w", shard, err)
	}
	return parseIDs(ids), nil
}

// ShardUnavailable returns the ids of shard's unavailable guilds.
func (r *Reader) ShardUnavailable(ctx context.Context, shard int) ([]uint64, error) {
	ids, err := r.rdb.SMembers(ctx, r.keys.ShardUnavailable(shard)).Result()
	if err != nil {
		return nil, fmt.Errorf("cache: shard %d unavailable: %w", shard, err)
	}
	return parseIDs(ids), nil
}

// Counts are sizes of the projection.
type Counts struct {
	// Guilds counts guilds, unavailable ones included.
	Guilds int64
	// Unavailable counts guilds in an outage or not yet created.
	Unavailable int64
	// Channels counts channels and threads.
	Channels int64
	// Roles counts roles.
	Roles int64
	// Members counts cached memberships.
	Members int64
	// Users is the number of distinct cached users in TotalCounts. Per shard
	// and per cluster it equals Members: a user on two shards counts on both,
	// as it does in each cluster's own cache.
	Users int64
}

// Add adds o to c, field by field: the counts of two shards, or of two
// clusters, make their sum.
func (c *Counts) Add(o Counts) {
	c.Guilds += o.Guilds
	c.Unavailable += o.Unavailable
	c.Channels += o.Channels
	c.Roles += o.Roles
	c.Members += o.Members
	c.Users += o.Users
}

// shardCounts reads the counts of shards in one pipeline and sums them.
func (r *Reader) shardCounts(ctx context.Context, shards []int) (Counts, error) {
	by, err := r.CountsByShard(ctx, shards)
	var c Counts
	for _, n := range by {
		c.Add(n)
	}
	return c, err
}

// CountsByShard returns the counts of each of shards, read in one
// pipeline. A shard with nothing projected counts zero.
func (r *Reader) CountsByShard(ctx context.Context, shards []int) (map[int]Counts, error) {
	pipe := r.rdb.Pipeline()
	type cmds struct {
		g, u *redis.IntCmd
		v    *redis.StringSliceCmd
	}
	cs := make([]cmds, len(shards))
	for i, s := range shards {
		cs[i] = cmds{
			g: pipe.SCard(ctx, r.keys.ShardGuilds(s)),
			u: pipe.SCard(ctx, r.keys.ShardUnavailable(s)),
			v: pipe.HVals(ctx, r.keys.ShardCounts(s)),
		}
	}
	out := make(map[int]Counts, len(shards))
	if len(shards) == 0 {
		return out, nil
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return out, fmt.Errorf("cache: counts: %w", err)
	}
	for i, x := range cs {
		var c Counts
		c.Guilds = x.g.Val()
		c.Unavailable = x.u.Val()
		for _, v := range x.v.Val() {
			parts := strings.SplitN(v, ",", 3)
			if len(parts) != 3 {
				continue
			}
			ch, _ := strconv.ParseInt(parts[0], 10, 64)
			ro, _ := strconv.ParseInt(parts[1], 10, 64)
			me, _ := strconv.ParseInt(parts[2], 10, 64)
			c.Channels += ch
			c.Roles += ro
			c.Members += me
		}
		c.Users = c.Members
		out[shards[i]] = c
	}
	return out, nil
}

// ShardGuildCounts returns the number of guilds (unavailable ones
// included) each of shards owns: the size of its keyspace.ShardGuilds set,
// the one count of a shard's guilds every view shows. It reads one SCARD
// per shard, in one pipeline; a shard with nothing projected counts zero.
func (r *Reader) ShardGuildCounts(ctx context.Context, shards []int) (map[int]int64, error) {
	out := make(map[int]int64, len(shards))
	if len(shards) == 0 {
		return out, nil
	}
	pipe := r.rdb.Pipeline()
	cs := make([]*redis.IntCmd, len(shards))
	for i, s := range shards {
		cs[i] = pipe.SCard(ctx, r.keys.ShardGuilds(s))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return out, fmt.Errorf("cache: shard guild counts: %w", err)
	}
	for i, c := range cs {
		out[shards[i]] = c.Val()
	}
	return out, nil
}

// ShardCounts returns the counts of one shard.
func (r *Reader) ShardCounts(ctx context.Context, shard int) (Counts, error) {
	return r.shardCounts(ctx, []int{shard})
}

// ClusterCounts returns the counts of the shards the shard map assigns to
// cluster; ErrNotFound when it assigns none.
func (r *Reader) ClusterCounts(ctx context.Context, cluster int) (Counts, error) {
	sm, err := shardmap.Load(ctx, r.rdb, r.keys)
	if err != nil {
		return Counts{}, fmt.Errorf("cache: shard map: %w", err)
	}
	shards := sm.ClusterShards(cluster)
	if len(shards) == 0 {
		return Counts{}, fmt.Errorf("cache: cluster %d has no shards in the shard map: %w", cluster, ErrNotFound)
	}
	return r.shardCounts(ctx, shards)
}

// TotalCounts returns the counts of every shard below the shard map's
// shard_count; Users is the number of distinct users.
func (r *Reader) TotalCounts(ctx context.Context) (Counts, error) {
	n, err := r.shardCount(ctx)
	if err != nil {
		return Counts{}, err
	}
	shards := make([]int, n)
	for i := range shards {
		shards[i] = i
	}
	c, err := r.shardCounts(ctx, shards)
	if err != nil {
		return c, err
	}
	u, err := r.rdb.SCard(ctx, r.keys.Users()).Result()
	if err != nil {
		return c, fmt.Errorf("cache: users: %w", err)
	}
	c.Users = u
	return c, nil
}

func (r *Reader) shardCount(ctx context.Context) (int, error) {
	n, err := shardmap.ReadShardCount(ctx, r.rdb, r.keys)
	if errors.Is(err, shardmap.ErrNoShardCount) {
		return 0, fmt.Errorf("cache: shard map has no shard_count: %w", ErrNotFound)
	}
	if err != nil {
		return 0, fmt.Errorf("cache: shard map: %w", err)
	}
	return n, nil
}

// Schema returns what the projection keeps, per entity, as the projector
// recorded it; an entity that is not projected is absent.
func (r *Reader) Schema(ctx context.Context) (map[Entity][]string, error) {
	m, err := r.rdb.HGetAll(ctx, r.keys.CacheSchema()).Result()
	if err != nil {
		return nil, fmt.Errorf("cache: schema: %w", err)
	}
	out := make(map[Entity][]string, len(m))
	for k, v := range m {
		if v == "" {
			out[Entity(k)] = []string{}
		} else {
			out[Entity(k)] = strings.Split(v, ",")
		}
	}
	return out, nil
}
