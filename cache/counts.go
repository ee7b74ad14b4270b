package cache

import (
	"strconv"

	"github.com/redis/go-redis/v9"
)

// writeCounts writes the shard counts of the touched guilds and removes the users
// whose last guild went.
func (b *batch) writeCounts() error {
	k := b.p.cfg.Keys
	counts := map[int][]any{}
	countOf := func(s [numRels]int64) string {
		return strconv.FormatInt(s[0], 10) + "," + strconv.FormatInt(s[1], 10) + "," + strconv.FormatInt(s[2], 10)
	}
	for g, m := range b.models {
		if m.deleted || !b.touch[g] {
			continue
		}
		var s [numRels]int64
		for r := rel(0); r < numRels; r++ {
			s[r] = int64(len(m.sets[r]))
		}
		counts[b.shard[g]] = append(counts[b.shard[g]], strconv.FormatUint(g, 10), countOf(s))
	}
	type recount struct {
		g    uint64
		cmds [numRels]*redis.IntCmd
	}
	var rc []recount
	for g := range b.scard {
		if b.models[g] != nil {
			continue
		}
		r := recount{g: g}
		for x := rel(0); x < numRels; x++ {
			if b.hasRel[x] {
				r.cmds[x] = b.to(b.relKey(g, x)).SCard(b.ctx, b.relKey(g, x))
				b.n++
			}
		}
		rc = append(rc, r)
	}
	type userCheck struct {
		u   uint64
		cmd *redis.IntCmd
	}
	var uc []userCheck
	for u, st := range b.users {
		if st < 0 {
			uc = append(uc, userCheck{u, b.to(k.UserGuilds(u)).SCard(b.ctx, k.UserGuilds(u))})
			b.n++
		}
	}
	for shard, args := range counts {
		b.to(k.ShardCounts(shard)).HSet(b.ctx, k.ShardCounts(shard), args...)
		b.n++
	}
	if err := b.send(); err != nil {
		return err
	}
	// Follow-ups that needed the replies above.
	for _, r := range rc {
		var s [numRels]int64
		for x := rel(0); x < numRels; x++ {
			if r.cmds[x] != nil {
				s[x] = r.cmds[x].Val()
			}
		}
		b.to(k.ShardCounts(b.shard[r.g])).HSet(b.ctx, k.ShardCounts(b.shard[r.g]), strconv.FormatUint(r.g, 10), countOf(s))
		b.n++
	}
	for _, c := range uc {
		if c.cmd.Val() == 0 {
			b.del(k.User(c.u))
			b.to(k.Users()).SRem(b.ctx, k.Users(), strconv.FormatUint(c.u, 10))
			b.n++
		}
	}
	return b.send()
}
