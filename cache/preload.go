package cache

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// loadReq asks for the model of guild g, owned by shard.
type loadReq struct {
	g     uint64
	shard int
}

// read loads the models of loads (into pre) and whether checks exist.
//
// Most GUILD_CREATEs are for guilds whose sets are empty (first start, or
// after READY marked them), so the sets are not read blindly: one HGET of the
// guild's owner and one HMGET of the shard's counts per batch tell which
// guilds have anything stored, and only those are read, in a second round
// trip. The counts are exact (see writeCounts), and a guild another shard owned
// is always read, so the shortcut cannot hide a stale member.
func (b *batch) read(loads []loadReq, checks []uint64) error {
	if len(loads) == 0 && len(checks) == 0 {
		return nil
	}
	k := b.p.cfg.Keys
	pipe := b.rdb.Pipeline()
	owner := make([]*redis.StringCmd, len(loads))
	byShard := map[int][]int{} // shard -> indexes into loads
	for i, l := range loads {
		owner[i] = pipe.HGet(b.ctx, k.Guild(l.g), "shard")
		byShard[l.shard] = append(byShard[l.shard], i)
	}
	counts := make([]*redis.SliceCmd, len(loads))
	for shard, idx := range byShard {
		fields := make([]string, len(idx))
		for j, i := range idx {
			fields[j] = strconv.FormatUint(loads[i].g, 10)
		}
		c := pipe.HMGet(b.ctx, k.ShardCounts(shard), fields...)
		for _, i := range idx {
			counts[i] = c
		}
	}
	cc := make([]*redis.IntCmd, len(checks))
	for i, g := range checks {
		cc[i] = pipe.Exists(b.ctx, k.Guild(g))
	}
	b.p.commands.Add(uint64(len(loads) + len(byShard) + len(checks)))
	if _, err := pipe.Exec(b.ctx); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("cache: read batch: %w", err)
	}
	for i, g := range checks {
		b.known[g] = cc[i].Val() > 0
	}
	pos := map[int]int{} // index into loads -> position in its shard's HMGET
	for _, idx := range byShard {
		for j, i := range idx {
			pos[i] = j
		}
	}
	var need []int
	for i, l := range loads {
		o, err := owner[i].Result()
		exists := err == nil
		b.known[l.g] = exists
		m := &model{}
		for r := rel(0); r < numRels; r++ {
			m.sets[r] = set{}
		}
		b.pre[l.g] = m
		if !exists {
			continue
		}
		var cnt string
		if v := counts[i].Val(); pos[i] < len(v) {
			cnt, _ = v[pos[i]].(string)
		}
		if o == strconv.Itoa(l.shard) && (cnt == "" || cnt == "0,0,0") {
			continue
		}
		need = append(need, i)
	}
	if len(need) == 0 {
		return nil
	}
	pipe = b.rdb.Pipeline()
	sets := make([][numRels]*redis.StringSliceCmd, len(need))
	n := 0
	for j, i := range need {
		for r := rel(0); r < numRels; r++ {
			if b.hasRel[r] {
				sets[j][r] = pipe.SMembers(b.ctx, b.relKey(loads[i].g, r))
				n++
			}
		}
	}
	b.p.commands.Add(uint64(n))
	if _, err := pipe.Exec(b.ctx); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("cache: read sets: %w", err)
	}
	for j, i := range need {
		m := b.pre[loads[i].g]
		for r := rel(0); r < numRels; r++ {
			if sets[j][r] != nil {
				for _, id := range sets[j][r].Val() {
					m.sets[r][id] = struct{}{}
				}
			}
		}
	}
	return nil
}

// load returns the model of guild g (owned by shard), reading it when needed.
func (b *batch) load(g uint64, shard int) (*model, error) {
	if err := b.loadMany([]uint64{g}, shard); err != nil {
		return nil, err
	}
	return b.models[g], nil
}

// loadMany loads several models of one shard with one read.
func (b *batch) loadMany(gs []uint64, shard int) error {
	var need []loadReq
	for _, g := range gs {
		if b.models[g] != nil {
			continue
		}
		if m := b.pre[g]; m != nil && !b.touch[g] {
			b.models[g] = m
			continue
		}
		delete(b.pre, g)
		need = append(need, loadReq{g, shard})
	}
	if len(need) == 0 {
		return nil
	}
	if err := b.send(); err != nil {
		return err
	}
	if err := b.read(need, nil); err != nil {
		return err
	}
	for _, l := range need {
		b.models[l.g] = b.pre[l.g]
	}
	return nil
}

// isKnown reports whether guild g is in the projection.
func (b *batch) isKnown(g uint64) (bool, error) {
	if m := b.models[g]; m != nil {
		return !m.deleted, nil
	}
	if k, ok := b.known[g]; ok {
		return k, nil
	}
	if err := b.send(); err != nil {
		return false, err
	}
	if err := b.read(nil, []uint64{g}); err != nil {
		return false, err
	}
	return b.known[g], nil
}
