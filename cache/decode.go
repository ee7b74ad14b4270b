package cache

import (
	"runtime"
	"strconv"
	"sync"
)

// Decoding a GUILD_CREATE (walking a few kilobytes of JSON and building the
// field lists) costs about as much CPU as Redis spends storing the result.
// It does not depend on what is stored, so it runs ahead of the writer, on
// the next batch while the current one is in Redis, and on several cores.

// entityDoc is one decoded channel, role or member (with its user).
type entityDoc struct {
	id   uint64
	sid  string
	hw   hashWrite
	user hashWrite // members only
}

// guildDoc is a decoded GUILD_CREATE.
type guildDoc struct {
	guild                    hashWrite
	channels, roles, members []entityDoc
	emojis                   []byte // raw array; nil when absent
	err                      error
}

func (p *Projector) decodeGuild(data []byte) *guildDoc {
	d := &guildDoc{}
	fields := p.plan.fields
	d.err = func() error {
		var gx extra
		if err := projectX(EntityGuild, data, fields[EntityGuild], &d.guild, &gx); err != nil {
			return err
		}
		d.emojis = gx.emojis
		one := func(e Entity, out *[]entityDoc) func([]byte) error {
			return func(o []byte) error {
				var x extra
				var hw hashWrite
				if err := projectX(e, o, fields[e], &hw, &x); err != nil {
					return err
				}
				if x.id != 0 {
					*out = append(*out, entityDoc{id: x.id, sid: strconv.FormatUint(x.id, 10), hw: hw})
				}
				return nil
			}
		}
		if p.plan.entities[EntityChannel] {
			d.channels = make([]entityDoc, 0, 16)
			if err := eachElem(gx.channels, one(EntityChannel, &d.channels)); err != nil {
				return err
			}
			if err := eachElem(gx.threads, one(EntityChannel, &d.channels)); err != nil {
				return err
			}
		}
		if p.plan.entities[EntityRole] {
			d.roles = make([]entityDoc, 0, 16)
			if err := eachElem(gx.roles, one(EntityRole, &d.roles)); err != nil {
				return err
			}
		}
		if p.plan.entities[EntityMember] || p.plan.entities[EntityUser] {
			memberFields := fields[EntityMember]
			if !p.plan.entities[EntityMember] {
				memberFields = &fieldSet{maxLen: -1} // keeps nothing
			}
			err := eachElem(gx.members, func(o []byte) error {
				var x, ux extra
				ed := entityDoc{}
				if err := projectX(EntityMember, o, memberFields, &ed.hw, &x); err != nil {
					return err
				}
				if p.plan.entities[EntityUser] {
					if err := projectX(EntityUser, x.user, fields[EntityUser], &ed.user, &ux); err != nil {
						return err
					}
				} else {
					ux.id = snowflake(member(x.user, "id"))
				}
				if ux.id == 0 {
					return nil
				}
				ed.id, ed.sid = ux.id, strconv.FormatUint(ux.id, 10)
				d.members = append(d.members, ed)
				return nil
			})
			if err != nil {
				return err
			}
		}
		return nil
	}()
	return d
}

// decode fills in the headers of evs and decodes their GUILD_CREATEs, in
// parallel when there are several.
func (p *Projector) decode(evs []event) {
	var heavy []int
	for i := range evs {
		evs[i].hdr = scanHeader(evs[i])
		if evs[i].kind == evGuildCreate {
			heavy = append(heavy, i)
		}
	}
	// Half the cores at most: the writer, the client's I/O and, usually,
	// redis-server itself need the rest.
	workers := min(runtime.GOMAXPROCS(0)/2, 4, len(heavy)/8+1)
	if workers <= 1 {
		for _, i := range heavy {
			evs[i].doc = p.decodeGuild(evs[i].data)
		}
		return
	}
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for j := w; j < len(heavy); j += workers {
				i := heavy[j]
				evs[i].doc = p.decodeGuild(evs[i].data)
			}
		}(w)
	}
	wg.Wait()
}
