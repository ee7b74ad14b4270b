package cache

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
)

// rebucketBatch bounds the commands of one pipeline of Rebucket.
const rebucketBatch = 4096

// RebucketReport is what Rebucket moved.
type RebucketReport struct {
	// Guilds is the number of guilds found in the per-shard sets.
	Guilds int
	// Moved is how many of them changed shard.
	Moved int
	// Dropped is how many per-shard keys of shards past the new count
	// were deleted.
	Dropped int
}

// Rebucket moves the projection's per-shard records (keyspace.ShardGuilds,
// ShardUnavailable, ShardCounts, and each guild hash's "shard" field) from
// oldCount shards to newCount, by Discord's formula
// (guild_id >> 22) % shard_count. Entity keys are not touched: the guilds,
// channels, members and users stay where they are.
//
// It adds every guild to its new shard's records before it removes it from
// its old one, so a reader never finds a guild in no shard set; in
// between, a guild that moved is in two. No projector may write the
// per-shard records meanwhile (a re-shard runs it once the old generation
// stopped and before the new one starts).
func Rebucket(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace, oldCount, newCount int) (RebucketReport, error) {
	var rep RebucketReport
	if oldCount <= 0 || newCount <= 0 {
		return rep, fmt.Errorf("%w: rebucket from %d to %d shards", ErrInvalidConfig, oldCount, newCount)
	}
	// Read every shard's records, old and new ids alike: what a failed
	// earlier attempt left half-moved is found and finished too.
	type guildRec struct {
		from        []int // shards whose set holds it
		unavailable bool
		counts      string
	}
	guilds := map[uint64]*guildRec{}
	scan := max(oldCount, newCount)
	for lo := 0; lo < scan; lo += rebucketBatch / 3 {
		hi := min(lo+rebucketBatch/3, scan)
		pipe := rdb.Pipeline()
		members := make([]*redis.StringSliceCmd, hi-lo)
		unav := make([]*redis.StringSliceCmd, hi-lo)
		counts := make([]*redis.MapStringStringCmd, hi-lo)
		for s := lo; s < hi; s++ {
			members[s-lo] = pipe.SMembers(ctx, ks.ShardGuilds(s))
			unav[s-lo] = pipe.SMembers(ctx, ks.ShardUnavailable(s))
			counts[s-lo] = pipe.HGetAll(ctx, ks.ShardCounts(s))
		}
		if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
			return rep, fmt.Errorf("cache: rebucket: read shard records: %w", err)
		}
		for s := lo; s < hi; s++ {
			for _, m := range members[s-lo].Val() {
				id, err := strconv.ParseUint(m, 10, 64)
				if err != nil {
					continue
				}
				g := guilds[id]
				if g == nil {
					g = &guildRec{}
					guilds[id] = g
				}
				g.from = append(g.from, s)
			}
			for _, m := range unav[s-lo].Val() {
				if id, err := strconv.ParseUint(m, 10, 64); err == nil && guilds[id] != nil {
					guilds[id].unavailable = true
				}
			}
			for f, v := range counts[s-lo].Val() {
				if id, err := strconv.ParseUint(f, 10, 64); err == nil && guilds[id] != nil {
					guilds[id].counts = v
				}
			}
		}
	}
	rep.Guilds = len(guilds)

	// Add to the new shard first, then take out of the old ones.
	b := &rebucketPipe{ctx: ctx, rdb: rdb}
	for id, g := range guilds {
		to := shardOf(id, newCount)
		sid, gid := strconv.FormatUint(id, 10), strconv.Itoa(to)
		b.add(func(p redis.Pipeliner) {
			p.SAdd(ctx, ks.ShardGuilds(to), sid)
			if g.unavailable {
				p.SAdd(ctx, ks.ShardUnavailable(to), sid)
			}
			if g.counts != "" {
				p.HSet(ctx, ks.ShardCounts(to), sid, g.counts)
			}
			p.HSet(ctx, ks.Guild(id), "shard", gid)
		})
	}
	if err := b.flush(); err != nil {
		return rep, fmt.Errorf("cache: rebucket: add to the new shards: %w", err)
	}
	for id, g := range guilds {
		to := shardOf(id, newCount)
		moved := false
		for _, from := range g.from {
			if from == to {
				continue
			}
			moved = true
			if from >= newCount {
				continue // the whole key goes below
			}
			sid := strconv.FormatUint(id, 10)
			b.add(func(p redis.Pipeliner) {
				p.SRem(ctx, ks.ShardGuilds(from), sid)
				p.SRem(ctx, ks.ShardUnavailable(from), sid)
				p.HDel(ctx, ks.ShardCounts(from), sid)
			})
		}
		if moved {
			rep.Moved++
		}
	}
	for s := newCount; s < oldCount; s++ {
		b.add(func(p redis.Pipeliner) {
			p.Del(ctx, ks.ShardGuilds(s))
			p.Del(ctx, ks.ShardUnavailable(s))
			p.Del(ctx, ks.ShardCounts(s))
		})
		rep.Dropped += 3
	}
	if err := b.flush(); err != nil {
		return rep, fmt.Errorf("cache: rebucket: remove from the old shards: %w", err)
	}
	return rep, nil
}

// shardOf is Discord's shard of a guild.
func shardOf(guild uint64, count int) int {
	return int((guild >> 22) % uint64(count))
}

// rebucketPipe sends queued writes in pipelines of about rebucketBatch
// commands.
type rebucketPipe struct {
	ctx  context.Context
	rdb  redis.UniversalClient
	pipe redis.Pipeliner
	err  error
}

func (b *rebucketPipe) add(f func(redis.Pipeliner)) {
	if b.err != nil {
		return
	}
	if b.pipe == nil {
		b.pipe = b.rdb.Pipeline()
	}
	f(b.pipe)
	if b.pipe.Len() >= rebucketBatch {
		b.err = b.send()
	}
}

func (b *rebucketPipe) send() error {
	if b.pipe == nil || b.pipe.Len() == 0 {
		return nil
	}
	_, err := b.pipe.Exec(b.ctx)
	b.pipe = nil
	return err
}

func (b *rebucketPipe) flush() error {
	if b.err != nil {
		return b.err
	}
	return b.send()
}
