package cache

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

func (b *batch) guildCreate(ev event, g uint64) error {
	k := b.p.cfg.Keys
	d := ev.doc
	if d == nil {
		d = b.p.decodeGuild(ev.data)
	}
	if d.err != nil {
		return d.err
	}
	m, err := b.load(g, ev.shard)
	if err != nil {
		return err
	}
	// The guild hash.
	d.guild.put("shard", strconv.Itoa(ev.shard))
	d.guild.del = append(d.guild.del, "unavailable")
	fresh := !b.known[g]
	b.hwrite(k.Guild(g), &d.guild, fresh)
	sg := strconv.FormatUint(g, 10)
	b.setOp(k.ShardGuilds(ev.shard), sg, true)
	b.setOp(k.ShardUnavailable(ev.shard), sg, false)
	b.touched(g, ev.shard)
	m.deleted = false
	b.known[g] = true

	// Relations: GUILD_CREATE lists a guild's channels, active threads,
	// roles and (some) members in full, so whatever the old sets hold
	// beyond them is stale. An entity the old set did not hold is new, so
	// its null fields need no HDEL.
	if b.hasRel[relChannels] {
		ids := make([]string, 0, len(d.channels))
		for i := range d.channels {
			c := &d.channels[i]
			_, had := m.sets[relChannels][c.sid]
			c.hw.put("guild_id", sg)
			b.hwrite(k.Channel(c.id), &c.hw, !had)
			ids = append(ids, c.sid)
		}
		b.replaceRel(g, m, relChannels, ids, func(id uint64) { b.del(k.Channel(id)) })
	}
	if b.hasRel[relRoles] {
		ids := make([]string, 0, len(d.roles))
		for i := range d.roles {
			r := &d.roles[i]
			_, had := m.sets[relRoles][r.sid]
			r.hw.put("guild_id", sg)
			b.hwrite(k.Role(r.id), &r.hw, !had)
			ids = append(ids, r.sid)
		}
		b.replaceRel(g, m, relRoles, ids, func(id uint64) { b.del(k.Role(id)) })
	}
	if b.hasRel[relMembers] {
		ids := make([]string, 0, len(d.members))
		for i := range d.members {
			md := &d.members[i]
			_, had := m.sets[relMembers][md.sid]
			if b.p.plan.entities[EntityMember] {
				b.hwrite(k.Member(g, md.id), &md.hw, !had)
			}
			if b.p.plan.entities[EntityUser] {
				b.hwrite(k.User(md.id), &md.user, false)
				b.to(k.UserGuilds(md.id)).SAdd(b.ctx, k.UserGuilds(md.id), sg)
				b.n++
				b.users[md.id] = 1
				b.setOp(k.Users(), md.sid, true)
			}
			ids = append(ids, md.sid)
		}
		b.replaceRel(g, m, relMembers, ids, func(u uint64) {
			if b.p.plan.entities[EntityMember] {
				b.del(k.Member(g, u))
			}
			b.unref(g, u)
		})
	}
	if fresh && (d.emojis == nil || string(d.emojis) == "[]") {
		// Nothing to replace: skip the DEL of a hash that cannot exist.
		return nil
	}
	return b.emojis(g, d.emojis)
}

// replaceRel makes relation r of g exactly ids: drop calls remove the entity
// of each stale id, then the set is updated.
func (b *batch) replaceRel(g uint64, m *model, r rel, ids []string, drop func(id uint64)) {
	keep := make(set, len(ids))
	for _, id := range ids {
		keep[id] = struct{}{}
	}
	var stale []string
	for id := range m.sets[r] {
		if _, ok := keep[id]; !ok {
			stale = append(stale, id)
		}
	}
	for _, id := range stale {
		n, _ := strconv.ParseUint(id, 10, 64)
		drop(n)
	}
	b.remRel(g, r, stale...)
	b.addRel(g, r, ids...)
}

func (b *batch) guildDelete(ev event, g uint64) error {
	k := b.p.cfg.Keys
	if string(member(ev.data, "unavailable")) == "true" {
		// An outage: the guild is still ours and comes back with a
		// GUILD_CREATE; keep its data, flagged.
		b.to(k.Guild(g)).HSet(b.ctx, k.Guild(g), "unavailable", "1", "shard", strconv.Itoa(ev.shard))
		b.n++
		b.setOp(k.ShardGuilds(ev.shard), strconv.FormatUint(g, 10), true)
		b.setOp(k.ShardUnavailable(ev.shard), strconv.FormatUint(g, 10), true)
		b.known[g] = true
		b.touched(g, ev.shard)
		return nil
	}
	m, err := b.load(g, ev.shard)
	if err != nil {
		return err
	}
	b.purge(g, m, ev.shard)
	return nil
}

// purge removes guild g and everything hanging off it.
func (b *batch) purge(g uint64, m *model, shard int) {
	k := b.p.cfg.Keys
	for id := range m.sets[relChannels] {
		n, _ := strconv.ParseUint(id, 10, 64)
		b.del(k.Channel(n))
	}
	for id := range m.sets[relRoles] {
		n, _ := strconv.ParseUint(id, 10, 64)
		b.del(k.Role(n))
	}
	for id := range m.sets[relMembers] {
		u, _ := strconv.ParseUint(id, 10, 64)
		if b.p.plan.entities[EntityMember] {
			b.del(k.Member(g, u))
		}
		b.unref(g, u)
	}
	for r := rel(0); r < numRels; r++ {
		if b.hasRel[r] {
			b.del(b.relKey(g, r))
		}
		m.sets[r] = set{}
	}
	b.del(k.GuildEmojis(g))
	b.del(k.Guild(g))
	b.setOp(k.ShardGuilds(shard), strconv.FormatUint(g, 10), false)
	b.setOp(k.ShardUnavailable(shard), strconv.FormatUint(g, 10), false)
	b.to(k.ShardCounts(shard)).HDel(b.ctx, k.ShardCounts(shard), strconv.FormatUint(g, 10))
	b.n++
	m.deleted = true
	b.known[g] = false
	b.touched(g, shard)
}

// threadListSync upserts the listed threads and removes the threads of the
// synced parents (all, when channel_ids is absent) that are not listed: they
// were archived or became inaccessible while the bot could not see them.
func (b *batch) threadListSync(g uint64, shard int, data []byte) error {
	listed := set{}
	err := eachElem(member(data, "threads"), func(t []byte) error {
		listed[strconv.FormatUint(snowflake(member(t, "id")), 10)] = struct{}{}
		return b.channel(g, t, false)
	})
	if err != nil || !b.hasRel[relChannels] {
		return err
	}
	fs := b.p.plan.fields[EntityChannel]
	if !fs.keep["type"] || !fs.keep["parent_id"] {
		return nil // cannot tell threads and their parents apart
	}
	var parents set
	if raw := member(data, "channel_ids"); raw != nil && !isNull(raw) {
		parents = set{}
		_ = eachElem(raw, func(e []byte) error {
			s, _ := text(e)
			parents[s] = struct{}{}
			return nil
		})
	}
	m, err := b.load(g, shard)
	if err != nil {
		return err
	}
	if err := b.send(); err != nil {
		return err
	}
	var ids []string
	for id := range m.sets[relChannels] {
		if _, ok := listed[id]; !ok {
			ids = append(ids, id)
		}
	}
	if len(ids) == 0 {
		return nil
	}
	pipe := b.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(ids))
	for i, id := range ids {
		n, _ := strconv.ParseUint(id, 10, 64)
		cmds[i] = pipe.HMGet(b.ctx, b.p.cfg.Keys.Channel(n), "type", "parent_id")
	}
	b.p.commands.Add(uint64(len(ids)))
	if _, err := pipe.Exec(b.ctx); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("cache: read threads: %w", err)
	}
	var stale []string
	for i, c := range cmds {
		v := c.Val()
		if len(v) != 2 {
			continue
		}
		typ, _ := v[0].(string)
		parent, _ := v[1].(string)
		if typ != "10" && typ != "11" && typ != "12" {
			continue
		}
		if parents != nil {
			if _, ok := parents[parent]; !ok {
				continue
			}
		}
		stale = append(stale, ids[i])
	}
	for _, id := range stale {
		n, _ := strconv.ParseUint(id, 10, 64)
		b.del(b.p.cfg.Keys.Channel(n))
	}
	b.remRel(g, relChannels, stale...)
	return nil
}
