// Command cache measures the Redis projection against a real redis-server
// and prints a table:
//
//   - ingest: GUILD_CREATE payloads through Projector.Enqueue until Flush
//     returns, in entities per second, against a baseline that HSETs the
//     very same hashes (read back from the projection) in pipelines of the
//     same size, in the same run;
//   - memory: MEMORY USAGE of a typical guild hash, and of all keys one
//     guild adds;
//   - reads: Reader.Guild latency against PING, sequential, same connection
//     pool.
//
// Start a throwaway server first:
//
//	redis-server --port 6398 --save '' --appendonly no --daemonize yes
//	go run ./bench/cache -redis redis://127.0.0.1:6398/0
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"os"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/cache"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/redisconn"
)

func main() {
	url := flag.String("redis", "redis://127.0.0.1:6398/0", "Redis URL (a throwaway server: the bench writes and deletes keys)")
	guilds := flag.Int("guilds", 10000, "GUILD_CREATE payloads per ingest run")
	runs := flag.Int("runs", 9, "paired ingest runs (projection and baseline)")
	reads := flag.Int("reads", 20000, "sequential reads for the latency rows")
	batch := flag.Int("batch", 512, "projector BatchSize (the baseline pipelines the same number of guilds)")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile of the ingest runs to this file")
	flag.Parse()
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			log.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}

	ctx := context.Background()
	rdb, err := redisconn.Open(ctx, *url)
	if err != nil {
		log.Fatal(err)
	}
	defer rdb.Close()

	payloads := make([][]byte, *guilds)
	var payloadBytes int
	for i := range payloads {
		payloads[i] = guildCreate(uint64(661720242585600000) + uint64(i)<<22)
		payloadBytes += len(payloads[i])
	}
	entitiesPerGuild := 1 + 5 + 6 + 1 + 1 // guild, channels, roles, member, user

	// Ingest. The data the baseline writes is read back from a first
	// projection run. Then projection and baseline runs alternate, their
	// order flipping every round, and the reported ratio is the median of
	// the per-round ratios: on a shared machine the load drifts, and
	// adjacent runs see the same load.
	warm := keyspace.MustNew("benchwarm")
	ingest(ctx, rdb, warm, payloads, *batch)
	hashes := readBack(ctx, rdb, warm, *guilds)
	purge(ctx, rdb, warm)
	var bestProj, bestBase time.Duration
	var enqueueNs float64
	var stats cache.Stats
	var ratios []float64
	for r := 0; r < *runs; r++ {
		var d, bd time.Duration
		projRun := func() {
			ks := keyspace.MustNew(fmt.Sprintf("bench%d", r))
			var enq float64
			var st cache.Stats
			d, enq, st = ingest(ctx, rdb, ks, payloads, *batch)
			if bestProj == 0 || d < bestProj {
				bestProj, enqueueNs, stats = d, enq, st
			}
			purge(ctx, rdb, ks)
		}
		baseRun := func() {
			bd = baseline(ctx, rdb, hashes, *batch*entitiesPerGuild)
			if bestBase == 0 || bd < bestBase {
				bestBase = bd
			}
			purgePrefix(ctx, rdb, "megane:baseline:")
		}
		if r%2 == 0 {
			projRun()
			baseRun()
		} else {
			baseRun()
			projRun()
		}
		ratios = append(ratios, bd.Seconds()/d.Seconds())
	}
	slices.Sort(ratios)
	medianRatio := ratios[len(ratios)/2]
	ents := float64(*guilds * entitiesPerGuild)
	projRate := ents / bestProj.Seconds()
	baseRate := ents / bestBase.Seconds()

	// Memory and reads on a fresh projection.
	ks := keyspace.MustNew("benchmem")
	ingest(ctx, rdb, ks, payloads[:1000], *batch)
	guildBytes, allBytes := memory(ctx, rdb, ks, 661720242585600000+uint64(7)<<22)
	enc, _ := rdb.ObjectEncoding(ctx, ks.Guild(661720242585600000+uint64(7)<<22)).Result()
	rd := cache.NewReader(rdb, ks)
	pingP50, pingP99 := latency(*reads, func() error { return rdb.Ping(ctx).Err() })
	gP50, gP99 := latency(*reads, func() error {
		_, err := rd.Guild(ctx, 661720242585600000+uint64(7)<<22)
		return err
	})
	purge(ctx, rdb, ks)

	info, _ := rdb.Info(ctx, "server").Result()
	fmt.Printf("redis %s, %d GUILD_CREATE payloads of %d B avg (5 channels, 6 roles, 1 member) per run, %d paired runs, BatchSize %d, GOMAXPROCS %d\n\n",
		field(info, "redis_version"), *guilds, payloadBytes / *guilds, *runs, *batch, runtime.GOMAXPROCS(0))
	w := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(w, "measure\tvalue\tbaseline\tratio\ttarget\t")
	fmt.Fprintf(w, "ingest GUILD_CREATE, entities/s (best)\t%.0f\t%.0f (raw HSET)\t%.0f %%\t\t\n", projRate, baseRate, 100*projRate/baseRate)
	fmt.Fprintf(w, "ingest ratio, median of %d paired runs\t\t\t%.0f %%\t>= 50 %%\t\n", *runs, 100*medianRatio)
	fmt.Fprintf(w, "ingest GUILD_CREATE, guilds/s\t%.0f\t%.0f\t\t\t\n", float64(*guilds)/bestProj.Seconds(), float64(*guilds)/bestBase.Seconds())
	fmt.Fprintf(w, "Enqueue on the event path, ns/event\t%.0f\t\t\t\t\n", enqueueNs)
	fmt.Fprintf(w, "Redis commands per guild (projection)\t%.1f\t%d (HSET)\t\t\t\n", float64(stats.Commands)/float64(*guilds), entitiesPerGuild)
	fmt.Fprintf(w, "avg batch write latency\t%s\t\t\t\t\n", stats.AvgBatch.Round(time.Microsecond))
	fmt.Fprintf(w, "MEMORY USAGE guild hash, bytes\t%d\t\t\t<= 500\t\n", guildBytes)
	fmt.Fprintf(w, "guild hash encoding\t%s\t\t\tlistpack\t\n", enc)
	fmt.Fprintf(w, "all keys of one guild, bytes\t%d\t\t\t\t\n", allBytes)
	fmt.Fprintf(w, "Reader.Guild p50\t%s\t%s (PING)\t%.2f x\t\t\n", gP50, pingP50, float64(gP50)/float64(pingP50))
	fmt.Fprintf(w, "Reader.Guild p99\t%s\t%s (PING)\t%.2f x\t\t\n", gP99, pingP99, float64(gP99)/float64(pingP99))
	w.Flush()
}

func field(info, name string) string {
	for _, line := range splitLines(info) {
		if len(line) > len(name) && line[:len(name)+1] == name+":" {
			return line[len(name)+1:]
		}
	}
	return "?"
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := 0; i < len(s); i++ {
		if s[i] == '\n' {
			out = append(out, trimCR(s[start:i]))
			start = i + 1
		}
	}
	return append(out, trimCR(s[start:]))
}

func trimCR(s string) string {
	if len(s) > 0 && s[len(s)-1] == '\r' {
		return s[:len(s)-1]
	}
	return s
}

// ingest feeds payloads to a fresh projector and waits until all are in
// Redis; it returns the wall time, the Enqueue cost and the stats.
func ingest(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace, payloads [][]byte, batch int) (time.Duration, float64, cache.Stats) {
	p, err := cache.NewProjector(cache.Config{Redis: rdb, Keys: ks, BatchSize: batch, QueueSize: len(payloads) + 1})
	if err != nil {
		log.Fatal(err)
	}
	start := time.Now()
	for i, b := range payloads {
		if !p.Enqueue(i%16, "GUILD_CREATE", b) {
			log.Fatal("dropped")
		}
	}
	enq := time.Since(start)
	if err := p.Flush(ctx); err != nil {
		log.Fatal(err)
	}
	d := time.Since(start)
	st := p.Stats()
	if err := p.Close(ctx); err != nil {
		log.Fatal(err)
	}
	if st.Bad > 0 || st.Drops > 0 {
		log.Fatalf("bad %d, drops %d", st.Bad, st.Drops)
	}
	return d, float64(enq.Nanoseconds()) / float64(len(payloads)), st
}

type hashData struct {
	key    string
	fields []any
}

// readBack collects every hash the projection wrote for the guilds, so the
// baseline writes exactly the same data.
func readBack(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace, guilds int) []hashData {
	r := cache.NewReader(rdb, ks)
	var out []hashData
	add := func(key string) {
		m, err := rdb.HGetAll(ctx, key).Result()
		if err != nil || len(m) == 0 {
			log.Fatalf("read back %s: %v", key, err)
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		var f []any
		for _, k := range keys {
			f = append(f, k, m[k])
		}
		// Same key length as the projection's, another namespace.
		out = append(out, hashData{key: "megane:baseline:" + key[len(ks.Base()):], fields: f})
	}
	for i := 0; i < guilds; i++ {
		g := uint64(661720242585600000) + uint64(i)<<22
		add(ks.Guild(g))
		chans, _ := r.GuildChannels(ctx, g)
		for _, c := range chans {
			add(ks.Channel(c))
		}
		roles, _ := r.GuildRoles(ctx, g)
		for _, x := range roles {
			add(ks.Role(x))
		}
		members, _ := r.GuildMembers(ctx, g)
		for _, u := range members {
			add(ks.Member(g, u))
			add(ks.User(u))
		}
	}
	return out
}

// baseline HSETs the hashes in pipelines of per commands.
func baseline(ctx context.Context, rdb redis.UniversalClient, hashes []hashData, per int) time.Duration {
	start := time.Now()
	for i := 0; i < len(hashes); i += per {
		pipe := rdb.Pipeline()
		for _, h := range hashes[i:min(i+per, len(hashes))] {
			pipe.HSet(ctx, h.key, h.fields...)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			log.Fatal(err)
		}
	}
	return time.Since(start)
}

// memory returns MEMORY USAGE of guild g's hash and of every key it adds.
func memory(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace, g uint64) (int64, int64) {
	r := cache.NewReader(rdb, ks)
	usage := func(k string) int64 {
		n, err := rdb.MemoryUsage(ctx, k).Result()
		if err != nil {
			log.Fatalf("MEMORY USAGE %s: %v", k, err)
		}
		return n
	}
	gb := usage(ks.Guild(g))
	all := gb + usage(ks.GuildChannels(g)) + usage(ks.GuildRoles(g))
	chans, _ := r.GuildChannels(ctx, g)
	for _, c := range chans {
		all += usage(ks.Channel(c))
	}
	roles, _ := r.GuildRoles(ctx, g)
	for _, x := range roles {
		all += usage(ks.Role(x))
	}
	// The members set and the bot's own member hash; the bot's user hash
	// and its guild set are shared by every guild, so they are left out.
	all += usage(ks.GuildMembers(g))
	members, _ := r.GuildMembers(ctx, g)
	for _, u := range members {
		all += usage(ks.Member(g, u))
	}
	return gb, all
}

func latency(n int, op func() error) (p50, p99 time.Duration) {
	for i := 0; i < n/10; i++ { // warm up
		if err := op(); err != nil {
			log.Fatal(err)
		}
	}
	ds := make([]time.Duration, n)
	for i := range ds {
		start := time.Now()
		if err := op(); err != nil {
			log.Fatal(err)
		}
		ds[i] = time.Since(start)
	}
	slices.Sort(ds)
	return ds[n/2].Round(100 * time.Nanosecond), ds[n*99/100].Round(100 * time.Nanosecond)
}

func purge(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace) {
	purgePrefix(ctx, rdb, ks.Base())
}

// purgePrefix deletes the bench's own keys; SCAN is fine in a tool.
func purgePrefix(ctx context.Context, rdb redis.UniversalClient, prefix string) {
	iter := rdb.Scan(ctx, 0, prefix+"*", 5000).Iterator()
	var batch []string
	flush := func() {
		pipe := rdb.Pipeline()
		for _, k := range batch {
			pipe.Unlink(ctx, k)
		}
		_, _ = pipe.Exec(ctx)
		batch = batch[:0]
	}
	for iter.Next(ctx) {
		if batch = append(batch, iter.Val()); len(batch) == 1000 {
			flush()
		}
	}
	flush()
}

// guildCreate is a realistic small GUILD_CREATE
// (https://discord.com/developers/docs/events/gateway-events#guild-create):
// 5 channels, 6 roles, the bot's own member, everything else empty. The
// shape is the one cache's tests build and check against disgo.
func guildCreate(id uint64) []byte {
	sf := func(n uint64) string { return strconv.FormatUint(n, 10) }
	type obj = map[string]any
	var channels, roles []obj
	for i := uint64(1); i <= 5; i++ {
		channels = append(channels, obj{"id": sf(id + i), "type": 0, "name": "channel-" + sf(i), "position": i,
			"permission_overwrites": []any{}, "nsfw": false, "parent_id": nil, "topic": nil,
			"last_message_id": nil, "rate_limit_per_user": 0})
	}
	for i := uint64(0); i < 6; i++ {
		name := "role-" + sf(i)
		if i == 0 {
			name = "@everyone"
		}
		roles = append(roles, obj{"id": sf(id + 10 + i), "name": name, "permissions": "1071698660929",
			"position": i, "color": 0, "hoist": false, "managed": false, "mentionable": false, "flags": 0})
	}
	g := obj{"id": sf(id), "name": "Fake Guild " + sf(id), "icon": nil, "owner_id": "661720242585700000",
		"unavailable": false, "large": false, "member_count": 1, "joined_at": "2024-01-01T00:00:00.000000+00:00",
		"features": []string{"COMMUNITY", "NEWS"}, "preferred_locale": "en-US", "afk_timeout": 300,
		"verification_level": 0, "default_message_notifications": 0, "explicit_content_filter": 0,
		"mfa_level": 0, "nsfw_level": 0, "premium_tier": 0, "system_channel_flags": 0,
		"roles": roles, "channels": channels,
		"members": []obj{{"user": obj{"id": "1100000000000000001", "username": "fakebot", "discriminator": "0", "bot": true},
			"roles": []any{}, "joined_at": "2024-01-01T00:00:00.000000+00:00", "deaf": false, "mute": false,
			"flags": 0, "pending": false}},
		"threads": []any{}, "emojis": []any{}, "stickers": []any{}, "voice_states": []any{}, "presences": []any{},
		"stage_instances": []any{}, "guild_scheduled_events": []any{}, "soundboard_sounds": []any{}}
	b, err := json.Marshal(g)
	if err != nil {
		log.Fatal(err)
	}
	return b
}
