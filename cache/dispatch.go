package cache

import (
	"strconv"
)

func (b *batch) apply(ev event, g uint64) error {
	switch ev.kind {
	case evResumed:
		return nil
	case evReady:
		return b.ready(ev)
	case evUserUpdate:
		return b.userUpdate(ev)
	}
	if g == 0 {
		// A DM channel, or a payload without its guild: not projected.
		return nil
	}
	switch ev.kind {
	case evGuildCreate:
		return b.guildCreate(ev, g)
	case evGuildDelete:
		return b.guildDelete(ev, g)
	}
	known, err := b.isKnown(g)
	if err != nil || !known {
		return err
	}
	b.touched(g, ev.shard)
	switch ev.kind {
	case evGuildUpdate:
		b.h.reset()
		if err := project(EntityGuild, ev.data, b.p.plan.fields[EntityGuild], &b.h); err != nil {
			return err
		}
		b.hwrite(b.p.cfg.Keys.Guild(g), &b.h, false)
	case evChannelCreate, evChannelUpdate, evThreadCreate, evThreadUpdate:
		return b.channel(g, ev.data, false)
	case evChannelDelete, evThreadDelete:
		id := snowflake(member(ev.data, "id"))
		if id == 0 || !b.hasRel[relChannels] {
			return nil
		}
		b.del(b.p.cfg.Keys.Channel(id))
		b.remRel(g, relChannels, strconv.FormatUint(id, 10))
	case evThreadListSync:
		return b.threadListSync(g, ev.shard, ev.data)
	case evRoleCreate, evRoleUpdate:
		return b.role(g, member(ev.data, "role"), false)
	case evRoleDelete:
		id := snowflake(member(ev.data, "role_id"))
		if id == 0 || !b.hasRel[relRoles] {
			return nil
		}
		b.del(b.p.cfg.Keys.Role(id))
		b.remRel(g, relRoles, strconv.FormatUint(id, 10))
	case evMemberAdd, evMemberUpdate:
		return b.member(g, ev.data)
	case evMemberRemove:
		u := snowflake(member(member(ev.data, "user"), "id"))
		if u == 0 || !b.hasRel[relMembers] {
			return nil
		}
		b.removeMember(g, u)
	case evMembersChunk:
		if !b.hasRel[relMembers] {
			return nil
		}
		return eachElem(member(ev.data, "members"), func(m []byte) error {
			return b.member(g, m)
		})
	case evEmojisUpdate:
		return b.emojis(g, member(ev.data, "emojis"))
	}
	return nil
}
