package cache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"

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
	h, h2      hashWrite
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

// writeConns is the number of pipelines a batch's writes are spread over,
// by key. They are sent concurrently on their own connections, so the
// client encodes one while Redis executes the other; a key always goes to
// the same pipeline, which keeps the writes to each key in order (and
// nothing relies on the order of writes to different keys).
const writeConns = 2

// to returns the pipeline of key.
func (b *batch) to(key string) redis.Pipeliner {
	var h uint32 = 2166136261
	for i := 0; i < len(key); i++ {
		h = (h ^ uint32(key[i])) * 16777619
	}
	i := h % writeConns
	b.used[i]++
	return b.pipes[i]
}

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

// member queues adding (or removing) m to the shared set key.
func (b *batch) setOp(key, m string, add bool) {
	ms := b.shared[key]
	if ms == nil {
		ms = map[string]bool{}
		b.shared[key] = ms
		b.sharedKeys = append(b.sharedKeys, key)
	}
	ms[m] = add
}

// send executes the queued writes.
func (b *batch) send() error {
	for _, key := range b.sharedKeys {
		var adds, rems []any
		for m, add := range b.shared[key] {
			if add {
				adds = append(adds, m)
			} else {
				rems = append(rems, m)
			}
		}
		if len(adds) > 0 {
			b.to(key).SAdd(b.ctx, key, adds...)
			b.n++
		}
		if len(rems) > 0 {
			b.to(key).SRem(b.ctx, key, rems...)
			b.n++
		}
		delete(b.shared, key)
	}
	b.sharedKeys = b.sharedKeys[:0]
	if b.n == 0 {
		return nil
	}
	b.p.writes.Add(uint64(b.n))
	var errs [writeConns]error
	var wg sync.WaitGroup
	for i := range b.pipes {
		if b.used[i] == 0 {
			continue
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if _, err := b.pipes[i].Exec(b.ctx); err != nil && !errors.Is(err, redis.Nil) {
				errs[i] = err
			}
		}(i)
	}
	wg.Wait()
	b.n = 0
	for i := range b.pipes {
		b.pipes[i] = b.rdb.Pipeline()
		b.used[i] = 0
	}
	if err := errors.Join(errs[:]...); err != nil {
		return fmt.Errorf("cache: write batch: %w", err)
	}
	return nil
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
					slog.Int("shard_id", ev.shard), slog.Int("kind", int(ev.kind)), slog.Any("err", err))
				continue
			}
			return err
		}
	}
	if err := b.finish(); err != nil {
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
// trip. The counts are exact (see finish), and a guild another shard owned
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
	b.p.writes.Add(uint64(len(loads) + len(byShard) + len(checks)))
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
	b.p.writes.Add(uint64(n))
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

// hwrite sends h to the hash key: HSET of the values, and HDEL of the nulls
// unless fresh says the hash cannot hold them.
func (b *batch) hwrite(key string, h *hashWrite, fresh bool) {
	if len(h.set) > 0 {
		b.to(key).HSet(b.ctx, key, h.set...)
		b.n++
	}
	if len(h.del) > 0 && !fresh {
		b.to(key).HDel(b.ctx, key, h.del...)
		b.n++
	}
}

func (b *batch) del(key string) {
	b.to(key).Del(b.ctx, key)
	b.n++
}

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
	b.p.writes.Add(uint64(len(ids)))
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
	b.p.writes.Add(1)
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
		b.p.writes.Add(uint64(len(stale)))
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

// finish writes the shard counts of the touched guilds and removes the users
// whose last guild went.
func (b *batch) finish() error {
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
