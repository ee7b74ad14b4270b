package cache

import (
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// ready applies a new session of a shard: the guilds it lists are now the
// shard's (unavailable until their GUILD_CREATE); the guilds it owned before
// and does not list are purged. A guild that another shard has claimed since
// (the shard count changed) is only unlinked from this shard: its data
// belongs to the new owner.
func (b *batch) ready(ev event) error {
	k := b.p.cfg.Keys
	shard := ev.shard
	if s := member(ev.data, "shard"); s != nil {
		_ = eachElem(s, func(e []byte) error {
			if n, err := strconv.Atoi(string(e)); err == nil {
				shard = n
			}
			return errStop
		})
	}
	listed := set{}
	var ids []uint64
	err := eachElem(member(ev.data, "guilds"), func(e []byte) error {
		if g := snowflake(member(e, "id")); g != 0 {
			ids = append(ids, g)
			listed[strconv.FormatUint(g, 10)] = struct{}{}
		}
		return nil
	})
	if err != nil {
		return err
	}
	if err := b.send(); err != nil {
		return err
	}
	old, err := b.rdb.SMembers(b.ctx, k.ShardGuilds(shard)).Result()
	b.p.commands.Add(1)
	if err != nil {
		return fmt.Errorf("cache: read shard guilds: %w", err)
	}
	var stale []uint64
	for _, id := range old {
		if _, ok := listed[id]; !ok {
			if g, err := strconv.ParseUint(id, 10, 64); err == nil {
				stale = append(stale, g)
			}
		}
	}
	if len(stale) > 0 {
		pipe := b.rdb.Pipeline()
		owner := make([]*redis.StringCmd, len(stale))
		for i, g := range stale {
			owner[i] = pipe.HGet(b.ctx, k.Guild(g), "shard")
		}
		b.p.commands.Add(uint64(len(stale)))
		if _, err := pipe.Exec(b.ctx); err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("cache: read guild owners: %w", err)
		}
		var mine []uint64
		sh := strconv.Itoa(shard)
		for i, g := range stale {
			if o, err := owner[i].Result(); err == nil && o != sh {
				// Claimed by another shard: unlink only.
				b.setOp(k.ShardGuilds(shard), strconv.FormatUint(g, 10), false)
				b.setOp(k.ShardUnavailable(shard), strconv.FormatUint(g, 10), false)
				b.to(k.ShardCounts(shard)).HDel(b.ctx, k.ShardCounts(shard), strconv.FormatUint(g, 10))
				b.n++
				continue
			}
			mine = append(mine, g)
		}
		if err := b.loadMany(mine, shard); err != nil {
			return err
		}
		for _, g := range mine {
			b.purge(g, b.models[g], shard)
		}
	}
	for _, g := range ids {
		b.to(k.Guild(g)).HSet(b.ctx, k.Guild(g), "unavailable", "1", "shard", strconv.Itoa(shard))
		b.n++
		b.setOp(k.ShardGuilds(shard), strconv.FormatUint(g, 10), true)
		b.setOp(k.ShardUnavailable(shard), strconv.FormatUint(g, 10), true)
		b.known[g] = true
		if m := b.models[g]; m != nil {
			m.deleted = false
		}
		b.touched(g, shard)
	}
	b.p.log.Debug("cache: shard session replaced projection",
		slog.Int("shard_id", shard), slog.Int("guilds", len(ids)), slog.Int("purged_or_moved", len(stale)))
	return nil
}
