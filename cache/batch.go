package cache

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"

	"github.com/redis/go-redis/v9"
)

// How a batch is written
//
// Events are applied in order into one pipeline. Most events are blind
// writes (HSET, SADD, DEL). Three need to know what is stored first: a
// GUILD_CREATE replaces a guild's channels, roles and members (the ones it no
// longer lists must go), a GUILD_DELETE removes them, and a READY purges the
// guilds its shard no longer owns. For those the batch keeps an in-memory
// copy of the guild's relation sets (its "model"), read from Redis once:
//
//   - before the batch, for every guild whose first event in the batch is a
//     GUILD_CREATE or GUILD_DELETE, in one pipelined read (so a burst of a
//     thousand GUILD_CREATEs costs one extra round trip, not a thousand);
//   - otherwise on demand, after sending the writes queued so far, so the read
//     sees them.
//
// Once loaded, a model follows every later event of the batch, which gives
// exact relation sizes for the shard counts without asking Redis again.
// Guilds touched only by blind writes get their sizes by SCARD at the end.
//
// Events for a guild that is not in the projection (a CHANNEL_CREATE replayed
// after the guild was deleted, or arriving before its GUILD_CREATE) are
// skipped, so no orphan keys appear; the guild's next GUILD_CREATE carries
// their state anyway.

type rel uint8

const (
	relChannels rel = iota
	relRoles
	relMembers
	numRels
)

type set = map[string]struct{}

type model struct {
	sets    [numRels]set
	deleted bool
}

type batch struct {
	p     *Projector
	ctx   context.Context
	rdb   redis.UniversalClient
	pipes [writeConns]redis.Pipeliner
	used  [writeConns]int
	n     int // commands queued

	hasRel [numRels]bool
	models map[uint64]*model
	pre    map[uint64]*model // read before the batch, valid until the guild is touched
	known  map[uint64]bool   // guild hash exists
	touch  map[uint64]bool   // guilds written in this batch
	shard  map[uint64]int    // shard of each touched guild
	scard  map[uint64]bool   // touched guilds without a model: recount at the end
	users  map[uint64]int8   // +1 user added last, -1 removed last
	// Memberships of the shared sets (shard guilds, shard unavailable,
	// users), by key: the last add or remove of each member wins. They are
	// sent once per round trip instead of once per event.
	shared     map[string]map[string]bool
	sharedKeys []string
	h          hashWrite
}

func (p *Projector) newBatch(ctx context.Context) *batch {
	b := &batch{
		p: p, ctx: ctx, rdb: p.cfg.Redis,
		models: map[uint64]*model{}, pre: map[uint64]*model{}, known: map[uint64]bool{},
		touch: map[uint64]bool{}, shard: map[uint64]int{}, scard: map[uint64]bool{},
		users: map[uint64]int8{}, shared: map[string]map[string]bool{},
	}
	b.hasRel[relChannels] = p.plan.entities[EntityChannel]
	b.hasRel[relRoles] = p.plan.entities[EntityRole]
	b.hasRel[relMembers] = p.plan.entities[EntityMember] || p.plan.entities[EntityUser]
	for i := range b.pipes {
		b.pipes[i] = b.rdb.Pipeline()
	}
	return b
}

// header is what the pre-scan learns of an event.
type header struct {
	guild uint64
	load  bool // GUILD_CREATE or a real GUILD_DELETE: wants the guild's model
}

func scanHeader(ev event) header {
	switch ev.kind {
	case evReady, evResumed, evUserUpdate:
		return header{}
	case evGuildCreate:
		return header{guild: snowflake(member(ev.data, "id")), load: true}
	case evGuildUpdate:
		return header{guild: snowflake(member(ev.data, "id"))}
	case evGuildDelete:
		g := snowflake(member(ev.data, "id"))
		return header{guild: g, load: string(member(ev.data, "unavailable")) != "true"}
	default:
		return header{guild: snowflake(member(ev.data, "guild_id"))}
	}
}

func (p *Projector) writeBatch(ctx context.Context, evs []event) error {
	b := p.newBatch(ctx)
	// Also with every READY: a shard that identified again may be
	// rebuilding a projection Redis lost, schema included.
	if !p.schemaWritten || slices.ContainsFunc(evs, func(ev event) bool { return ev.kind == evReady }) {
		b.writeSchema()
	}
	// Pre-scan: which guilds to read before writing anything.
	hdrs := make([]header, len(evs))
	seen := map[uint64]bool{}
	var loads []loadReq
	var checks []uint64
	for i, ev := range evs {
		h := ev.hdr
		hdrs[i] = h
		if h.guild == 0 || seen[h.guild] {
			continue
		}
		seen[h.guild] = true
		if h.load {
			loads = append(loads, loadReq{h.guild, ev.shard})
		} else if ev.kind != evGuildDelete {
			checks = append(checks, h.guild)
		}
	}
	if err := b.read(loads, checks); err != nil {
		return err
	}
	for i, ev := range evs {
		if err := b.apply(ev, hdrs[i].guild); err != nil {
			if errors.Is(err, errSyntax) {
				p.bad.Add(1)
				p.log.Warn("cache: unreadable event payload skipped",
					slog.Int("shard_id", ev.shard), slog.Int("kind", int(ev.kind)), slog.Any("error", err))
				continue
			}
			return err
		}
	}
	if err := b.writeCounts(); err != nil {
		return err
	}
	p.schemaWritten = true
	return nil
}

func (b *batch) writeSchema() {
	k := b.p.cfg.Keys.CacheSchema()
	for _, e := range AllEntities {
		if !b.p.plan.entities[e] {
			b.to(k).HDel(b.ctx, k, string(e))
		} else {
			b.to(k).HSet(b.ctx, k, string(e), strings.Join(b.p.plan.fields[e].names, ","))
		}
		b.n++
	}
}
