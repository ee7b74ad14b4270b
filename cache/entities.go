package cache

import (
	"strconv"
)

func (b *batch) relKey(g uint64, r rel) string {
	k := b.p.cfg.Keys
	switch r {
	case relChannels:
		return k.GuildChannels(g)
	case relRoles:
		return k.GuildRoles(g)
	default:
		return k.GuildMembers(g)
	}
}

func (b *batch) touched(g uint64, shard int) {
	b.touch[g] = true
	b.shard[g] = shard
}

func (b *batch) addRel(g uint64, r rel, ids ...string) {
	if !b.hasRel[r] || len(ids) == 0 {
		return
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	b.to(b.relKey(g, r)).SAdd(b.ctx, b.relKey(g, r), args...)
	b.n++
	if m := b.models[g]; m != nil {
		for _, id := range ids {
			m.sets[r][id] = struct{}{}
		}
	} else {
		b.scard[g] = true
	}
}

func (b *batch) remRel(g uint64, r rel, ids ...string) {
	if !b.hasRel[r] || len(ids) == 0 {
		return
	}
	args := make([]any, len(ids))
	for i, id := range ids {
		args[i] = id
	}
	b.to(b.relKey(g, r)).SRem(b.ctx, b.relKey(g, r), args...)
	b.n++
	if m := b.models[g]; m != nil {
		for _, id := range ids {
			delete(m.sets[r], id)
		}
	} else {
		b.scard[g] = true
	}
}

// channel writes one channel or thread object of guild g.
func (b *batch) channel(g uint64, obj []byte, fresh bool) error {
	if !b.hasRel[relChannels] {
		return nil
	}
	id := snowflake(member(obj, "id"))
	if id == 0 {
		return nil
	}
	b.h.reset()
	if err := project(EntityChannel, obj, b.p.plan.fields[EntityChannel], &b.h); err != nil {
		return err
	}
	b.h.put("guild_id", strconv.FormatUint(g, 10))
	b.hwrite(b.p.cfg.Keys.Channel(id), &b.h, fresh)
	b.addRel(g, relChannels, strconv.FormatUint(id, 10))
	return nil
}

func (b *batch) role(g uint64, obj []byte, fresh bool) error {
	if !b.hasRel[relRoles] || obj == nil {
		return nil
	}
	id := snowflake(member(obj, "id"))
	if id == 0 {
		return nil
	}
	b.h.reset()
	if err := project(EntityRole, obj, b.p.plan.fields[EntityRole], &b.h); err != nil {
		return err
	}
	b.h.put("guild_id", strconv.FormatUint(g, 10))
	b.hwrite(b.p.cfg.Keys.Role(id), &b.h, fresh)
	b.addRel(g, relRoles, strconv.FormatUint(id, 10))
	return nil
}

// member writes a member object (with its "user") of guild g.
func (b *batch) member(g uint64, obj []byte) error {
	if !b.hasRel[relMembers] {
		return nil
	}
	uobj := member(obj, "user")
	u := snowflake(member(uobj, "id"))
	if u == 0 {
		return nil
	}
	uid := strconv.FormatUint(u, 10)
	k := b.p.cfg.Keys
	if b.p.plan.entities[EntityMember] {
		b.h.reset()
		if err := project(EntityMember, obj, b.p.plan.fields[EntityMember], &b.h); err != nil {
			return err
		}
		b.hwrite(k.Member(g, u), &b.h, false)
	}
	if b.p.plan.entities[EntityUser] {
		b.h.reset()
		if err := project(EntityUser, uobj, b.p.plan.fields[EntityUser], &b.h); err != nil {
			return err
		}
		b.hwrite(k.User(u), &b.h, false)
		b.to(k.UserGuilds(u)).SAdd(b.ctx, k.UserGuilds(u), g)
		b.n++
		b.users[u] = 1
		b.setOp(k.Users(), uid, true)
	}
	b.addRel(g, relMembers, uid)
	return nil
}

func (b *batch) removeMember(g, u uint64) {
	k := b.p.cfg.Keys
	uid := strconv.FormatUint(u, 10)
	if b.p.plan.entities[EntityMember] {
		b.del(k.Member(g, u))
	}
	b.remRel(g, relMembers, uid)
	b.unref(g, u)
}

// unref drops guild g from user u's guilds; the user goes at the end of the
// batch if that was its last guild.
func (b *batch) unref(g, u uint64) {
	if !b.p.plan.entities[EntityUser] {
		return
	}
	b.to(b.p.cfg.Keys.UserGuilds(u)).SRem(b.ctx, b.p.cfg.Keys.UserGuilds(u), g)
	b.n++
	b.users[u] = -1
}

func (b *batch) emojis(g uint64, arr []byte) error {
	if !b.p.plan.entities[EntityEmoji] || arr == nil {
		return nil
	}
	key := b.p.cfg.Keys.GuildEmojis(g)
	var args []any
	err := eachElem(arr, func(e []byte) error {
		id := snowflake(member(e, "id"))
		name, _ := text(member(e, "name"))
		if id != 0 {
			args = append(args, strconv.FormatUint(id, 10), truncate(name, b.p.cfg.MaxValueBytes))
		}
		return nil
	})
	if err != nil {
		return err
	}
	// Replaced whole: an emoji update lists every emoji of the guild.
	b.del(key)
	if len(args) > 0 {
		b.to(key).HSet(b.ctx, key, args...)
		b.n++
	}
	return nil
}

func (b *batch) userUpdate(ev event) error {
	if !b.p.plan.entities[EntityUser] {
		return nil
	}
	u := snowflake(member(ev.data, "id"))
	if u == 0 {
		return nil
	}
	b.h.reset()
	if err := project(EntityUser, ev.data, b.p.plan.fields[EntityUser], &b.h); err != nil {
		return err
	}
	b.hwrite(b.p.cfg.Keys.User(u), &b.h, false)
	return nil
}
