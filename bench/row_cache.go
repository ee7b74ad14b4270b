package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/cache"
	"github.com/megane-go/megane/keyspace"
)

// firstGuild is the first guild id of the cache row; guild i is
// firstGuild + i<<22.
const firstGuild = uint64(661720242585600000)

// runCache measures the Redis projection:
//
//   - ingest: GUILD_CREATE payloads through Projector.Enqueue until Flush
//     returns, in entities per second, against a baseline that HSETs the
//     very same hashes (read back from the projection) in pipelines of the
//     same size, runs paired, their order flipping;
//   - size: cache-guilds guilds projected with and without their members:
//     Redis used_memory per guild and per member;
//   - reads: Reader.Guild against PING at that size, samples interleaved.
func runCache(e *env) error {
	ctx, c := e.ctx, e.cfg
	const batch = 512
	progress("cache: rendering %d GUILD_CREATE payloads of %d members", c.cacheGuilds, c.cacheMembers)
	payloads := make([][]byte, c.cacheGuilds)
	var payloadBytes int
	for i := range payloads {
		payloads[i] = guildCreate(firstGuild+uint64(i)<<22, c.cacheMembers)
		payloadBytes += len(payloads[i])
	}
	ingestSet := payloads[:min(c.cacheIngestGuilds, len(payloads))]

	// Ingest, paired runs.
	warm := keyspace.MustNew("benchwarm")
	if _, _, err := ingest(ctx, e.rdb, warm, ingestSet, batch); err != nil {
		return err
	}
	hashes, err := readBack(ctx, e.rdb, warm, len(ingestSet))
	purge(ctx, e.rdb, warm)
	if err != nil {
		return err
	}
	ents := float64(len(hashes))
	var projRates, baseRates, ratios []float64
	var st cache.Stats
	for r := range c.cacheRuns {
		progress("cache: ingest run %d of %d (%d guilds, %.0f entities)", r+1, c.cacheRuns, len(ingestSet), ents)
		var d, bd time.Duration
		var err error
		projRun := func() {
			ks := keyspace.MustNew(fmt.Sprintf("benchcache%d", r))
			d, st, err = ingest(ctx, e.rdb, ks, ingestSet, batch)
			purge(ctx, e.rdb, ks)
		}
		baseRun := func() {
			bd, err = baseline(ctx, e.rdb, hashes, batch*len(hashes)/len(ingestSet))
			purgePrefix(ctx, e.rdb, "megane:baseline:")
		}
		if r%2 == 0 {
			projRun()
			if err == nil {
				baseRun()
			}
		} else {
			baseRun()
			if err == nil {
				projRun()
			}
		}
		if err != nil {
			return err
		}
		projRates, baseRates = append(projRates, ents/d.Seconds()), append(baseRates, ents/bd.Seconds())
		ratios = append(ratios, bd.Seconds()/d.Seconds())
	}
	pr, br, ratio := median(projRates), median(baseRates), median(ratios)
	e.add(Figure{Row: "cache", Name: fmt.Sprintf("projection ingest, entities/s (%d members/guild)", c.cacheMembers), Value: pr, Unit: "/s",
		Baseline: "raw pipelined HSET", BaselineValue: br, Ratio: ratio,
		Target: "≥ 0.5× raw HSET", Met: met(ratio >= 0.5)})
	e.add(Figure{Row: "cache", Name: "Redis commands per entity (projection)", Value: float64(st.Commands) / ents, Unit: "",
		Baseline: "raw HSET", BaselineValue: 1, Ratio: float64(st.Commands) / ents})

	// Size: the same guilds without members, then with.
	progress("cache: projecting %d guilds without members, then with %d each", c.cacheGuilds, c.cacheMembers)
	bare := make([][]byte, len(payloads))
	for i := range bare {
		bare[i] = guildCreate(firstGuild+uint64(i)<<22, 0)
	}
	sizeKS := keyspace.MustNew("benchsize")
	purge(ctx, e.rdb, sizeKS)
	m0 := usedMemory(ctx, e.rdb)
	if _, _, err := ingest(ctx, e.rdb, sizeKS, bare, batch); err != nil {
		return err
	}
	perGuild := float64(usedMemory(ctx, e.rdb)-m0) / float64(len(bare))
	purge(ctx, e.rdb, sizeKS)
	bare = nil
	m0 = usedMemory(ctx, e.rdb)
	d, _, err := ingest(ctx, e.rdb, sizeKS, payloads, batch)
	if err != nil {
		return err
	}
	full := float64(usedMemory(ctx, e.rdb) - m0)
	perMember := 0.0
	if c.cacheMembers > 0 {
		perMember = (full - perGuild*float64(len(payloads))) / float64(len(payloads)*c.cacheMembers)
	}
	e.add(Figure{Row: "cache", Name: fmt.Sprintf("Redis bytes per guild (%d channels, 6 roles, no members)", 5), Value: perGuild, Unit: "B"})
	e.add(Figure{Row: "cache", Name: "Redis bytes per member (member hash, user hash, relations)", Value: perMember, Unit: "B"})
	e.add(Figure{Row: "cache", Name: fmt.Sprintf("Redis used_memory, %d guilds × %d members", len(payloads), c.cacheMembers), Value: full / (1 << 20), Unit: "MiB"})
	e.add(Figure{Row: "cache", Name: fmt.Sprintf("ingest at size, guilds/s (%d B GUILD_CREATE)", payloadBytes/len(payloads)), Value: float64(len(payloads)) / d.Seconds(), Unit: "/s"})

	rd := cache.NewReader(e.rdb, sizeKS)
	n := 0
	ping := func() error { return e.rdb.Ping(ctx).Err() }
	get := func() error {
		n++
		_, err := rd.Guild(ctx, firstGuild+uint64(n%len(payloads))<<22)
		return err
	}
	for range 1000 {
		if err := errors.Join(ping(), get()); err != nil {
			return err
		}
	}
	l, err := interleaved(c.reads, ping, get)
	if err != nil {
		return err
	}
	purge(ctx, e.rdb, sizeKS)
	e.add(Figure{Row: "cache", Name: fmt.Sprintf("Reader.Guild at %d guilds", len(payloads)), Value: l[1].us50(), P99: l[1].us99(), Unit: "µs",
		Baseline: "PING p50", BaselineValue: l[0].us50(), Ratio: l[1].us50() / l[0].us50()})
	return nil
}

// ingest feeds payloads to a fresh projector and waits until all are in
// Redis; it returns the wall time and the stats.
func ingest(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace, payloads [][]byte, batch int) (time.Duration, cache.Stats, error) {
	total := 0
	for _, b := range payloads {
		total += len(b)
	}
	p, err := cache.NewProjector(cache.Config{Redis: rdb, Keys: ks, BatchSize: batch,
		QueueSize: len(payloads) + 1, MaxQueueBytes: total + 1<<20})
	if err != nil {
		return 0, cache.Stats{}, err
	}
	start := time.Now()
	for i, b := range payloads {
		if !p.Enqueue(i%16, "GUILD_CREATE", b) {
			return 0, cache.Stats{}, errors.New("projector dropped a GUILD_CREATE")
		}
	}
	if err := p.Flush(ctx); err != nil {
		return 0, cache.Stats{}, err
	}
	d := time.Since(start)
	st := p.Stats()
	if err := p.Close(ctx); err != nil {
		return 0, cache.Stats{}, err
	}
	if st.Bad > 0 || st.Drops > 0 {
		return 0, cache.Stats{}, fmt.Errorf("projector: bad %d, drops %d", st.Bad, st.Drops)
	}
	return d, st, nil
}

type hashData struct {
	key    string
	fields []any
}

// readBack collects every hash the projection wrote for the guilds,
// pipelined, so the baseline writes exactly the same data.
func readBack(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace, guilds int) ([]hashData, error) {
	r := cache.NewReader(rdb, ks)
	var keys []string
	for i := range guilds {
		g := firstGuild + uint64(i)<<22
		keys = append(keys, ks.Guild(g))
		chans, err := r.GuildChannels(ctx, g)
		if err != nil {
			return nil, err
		}
		for _, c := range chans {
			keys = append(keys, ks.Channel(c))
		}
		roles, err := r.GuildRoles(ctx, g)
		if err != nil {
			return nil, err
		}
		for _, x := range roles {
			keys = append(keys, ks.Role(x))
		}
		members, err := r.GuildMembers(ctx, g)
		if err != nil {
			return nil, err
		}
		for _, u := range members {
			keys = append(keys, ks.Member(g, u), ks.User(u))
		}
	}
	out := make([]hashData, 0, len(keys))
	for i := 0; i < len(keys); i += 1000 {
		part := keys[i:min(i+1000, len(keys))]
		pipe := rdb.Pipeline()
		cmds := make([]*redis.MapStringStringCmd, len(part))
		for j, k := range part {
			cmds[j] = pipe.HGetAll(ctx, k)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("read back: %w", err)
		}
		for j, c := range cmds {
			m := c.Val()
			if len(m) == 0 {
				return nil, fmt.Errorf("read back %s: empty", part[j])
			}
			names := make([]string, 0, len(m))
			for k := range m {
				names = append(names, k)
			}
			slices.Sort(names)
			f := make([]any, 0, 2*len(names))
			for _, k := range names {
				f = append(f, k, m[k])
			}
			// Same key length as the projection's, another namespace.
			out = append(out, hashData{key: "megane:baseline:" + part[j][len(ks.Base()):], fields: f})
		}
	}
	return out, nil
}

// baseline HSETs the hashes in pipelines of per commands.
func baseline(ctx context.Context, rdb redis.UniversalClient, hashes []hashData, per int) (time.Duration, error) {
	start := time.Now()
	for i := 0; i < len(hashes); i += per {
		pipe := rdb.Pipeline()
		for _, h := range hashes[i:min(i+per, len(hashes))] {
			pipe.HSet(ctx, h.key, h.fields...)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return 0, fmt.Errorf("baseline: %w", err)
		}
	}
	return time.Since(start), nil
}

// guildCreate is a realistic GUILD_CREATE
// (https://discord.com/developers/docs/events/gateway-events#guild-create):
// 5 channels, 6 roles, the bot's own member and members human members of
// their own (user ids unique to the guild), everything else empty. The
// shape is the one cache's tests build and check against disgo.
func guildCreate(id uint64, members int) []byte {
	sf := func(b []byte, n uint64) []byte { return strconv.AppendUint(b, n, 10) }
	b := make([]byte, 0, 2500+members*260)
	b = append(b, `{"id":"`...)
	b = sf(b, id)
	b = append(b, `","name":"Fake Guild `...)
	b = sf(b, id)
	b = append(b, `","icon":null,"owner_id":"661720242585700000","unavailable":false,"large":`...)
	b = strconv.AppendBool(b, members > 50)
	b = append(b, `,"member_count":`...)
	b = strconv.AppendInt(b, int64(members+1), 10)
	b = append(b, `,"joined_at":"2024-01-01T00:00:00.000000+00:00","features":["COMMUNITY","NEWS"],"preferred_locale":"en-US","afk_timeout":300,`+
		`"verification_level":0,"default_message_notifications":0,"explicit_content_filter":0,"mfa_level":0,"nsfw_level":0,"premium_tier":0,"system_channel_flags":0,"roles":[`...)
	for i := uint64(0); i < 6; i++ {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, `{"id":"`...)
		b = sf(b, id+10+i)
		b = append(b, `","name":"`...)
		if i == 0 {
			b = append(b, "@everyone"...)
		} else {
			b = append(b, "role-"...)
			b = sf(b, i)
		}
		b = append(b, `","permissions":"1071698660929","position":`...)
		b = sf(b, i)
		b = append(b, `,"color":0,"hoist":false,"managed":false,"mentionable":false,"flags":0}`...)
	}
	b = append(b, `],"channels":[`...)
	for i := uint64(1); i <= 5; i++ {
		if i > 1 {
			b = append(b, ',')
		}
		b = append(b, `{"id":"`...)
		b = sf(b, id+i)
		b = append(b, `","type":0,"name":"channel-`...)
		b = sf(b, i)
		b = append(b, `","position":`...)
		b = sf(b, i)
		b = append(b, `,"permission_overwrites":[],"nsfw":false,"parent_id":null,"topic":null,"last_message_id":null,"rate_limit_per_user":0}`...)
	}
	b = append(b, `],"members":[{"user":{"id":"1100000000000000001","username":"fakebot","discriminator":"0","bot":true},"roles":[],"joined_at":"2024-01-01T00:00:00.000000+00:00","deaf":false,"mute":false,"flags":0,"pending":false}`...)
	for i := range uint64(members) {
		u := id + 1000 + i
		b = append(b, `,{"user":{"id":"`...)
		b = sf(b, u)
		b = append(b, `","username":"user`...)
		b = sf(b, u%1000000)
		b = append(b, `","discriminator":"0","global_name":null,"avatar":null},"nick":null,"roles":["`...)
		b = sf(b, id+11+i%5)
		b = append(b, `"],"joined_at":"2024-01-01T00:00:00.000000+00:00","deaf":false,"mute":false,"flags":0,"pending":false}`...)
	}
	b = append(b, `],"threads":[],"emojis":[],"stickers":[],"voice_states":[],"presences":[],"stage_instances":[],"guild_scheduled_events":[],"soundboard_sounds":[]}`...)
	return b
}
