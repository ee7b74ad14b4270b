package discordtest

import (
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/disgoorg/disgo/gateway"
	"github.com/disgoorg/snowflake/v2"
	"github.com/megane-go/megane/internal/testwait"
)

// These tests run the real disgo v0.19.6 client (the probe bot) in child processes.

func TestDisgoShardsReady(t *testing.T) {
	for _, comp := range []string{"zstd", "zlib", "none"} {
		t.Run(comp, func(t *testing.T) {
			t.Parallel()
			const shards = 6
			srv := newTestServer(t, Options{Shards: shards, MaxConcurrency: shards, HeartbeatInterval: time.Second,
				World: WorldOptions{Seed: 3, Guilds: 24}})
			var probes []*probe
			for i, ids := range []string{"0,1", "2,3", "4,5"} {
				probes = append(probes, startProbe(t, srv, fmt.Sprintf("%s-%d", comp, i), probeConfig{shards: ids, count: shards, compression: comp}))
			}
			world := srv.World()
			guildCreates := func() []probeEvent {
				var out []probeEvent
				for _, p := range probes {
					for _, ev := range p.snapshot() {
						if ev.Ev == "guild_create" {
							out = append(out, ev)
						}
					}
				}
				return out
			}
			waitProbes(t, "all shards ready and all guilds created", 20*time.Second, probes, func() bool {
				ready := 0
				for _, p := range probes {
					ready += p.count(isEv("ready"))
				}
				return ready == shards && len(guildCreates()) == len(world.Guilds)
			})
			if !srv.ShardsReady(shards) {
				t.Fatal("server does not see all shards ready")
			}
			seen := map[string]bool{}
			for _, ev := range guildCreates() {
				id := snowflake.MustParse(ev.GuildID)
				if seen[ev.GuildID] || ShardFor(id, shards) != ev.Shard || ev.Kind != "ready" {
					t.Fatalf("guild_create %+v: duplicate, wrong shard or not a GuildReady", ev)
				}
				seen[ev.GuildID] = true
			}
			st := srv.Stats()
			if st.Identifies != shards || len(st.Violations) != 0 {
				t.Fatalf("identifies %d violations %d", st.Identifies, len(st.Violations))
			}
			if got := st.REST["GET /gateway/bot"][200]; got != int64(len(probes)) {
				t.Fatalf("GET /gateway/bot called %d times, want once per process (%d)", got, len(probes))
			}
		})
	}
}

// messagePayload is a guild MESSAGE_CREATE as Discord sends it.
func messagePayload(id, channelID, guildID, authorID snowflake.ID, content string) map[string]any {
	return map[string]any{
		"id": id, "channel_id": channelID, "guild_id": guildID,
		"author":  map[string]any{"id": authorID, "username": "user", "discriminator": "0"},
		"member":  map[string]any{"roles": []string{}, "joined_at": "2024-01-01T00:00:00Z", "deaf": false, "mute": false, "flags": 0},
		"content": content, "timestamp": time.Now().UTC().Format(time.RFC3339Nano), "edited_timestamp": nil,
		"tts": false, "mention_everyone": false, "mentions": []any{}, "mention_roles": []any{}, "attachments": []any{},
		"embeds": []any{}, "components": []any{}, "pinned": false, "type": 0, "flags": 0,
	}
}

func TestDisgoDropResumeNoLossNoDuplicates(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, Options{Shards: 2, MaxConcurrency: 2, World: WorldOptions{Guilds: 4}})
	p := startProbe(t, srv, "drop", probeConfig{shards: "0,1", count: 2})
	waitProbes(t, "both shards ready", 15*time.Second, []*probe{p}, func() bool { return p.count(isEv("ready")) == 2 })

	world := srv.World()
	g := world.GuildsOfShard(0, 2)[0]
	ch, _ := world.FirstTextChannel(g.ID)
	author := world.Users[0].ID
	var want []string
	send := func(phase string, n int) {
		for i := 0; i < n; i++ {
			content := fmt.Sprintf("%s-%d", phase, i)
			want = append(want, content)
			if _, err := srv.Dispatch(g.ID, "MESSAGE_CREATE", messagePayload(srv.newID(), ch.ID, g.ID, author, content)); err != nil {
				t.Fatal(err)
			}
		}
	}
	send("before", 5)
	waitProbes(t, "messages before the drop", 5*time.Second, []*probe{p}, func() bool { return p.count(isEv("message_create")) == 5 })

	if err := srv.DropShard(0); err != nil {
		t.Fatal(err)
	}
	send("during", 5)
	testwait.For(t, 15*time.Second, "a successful RESUME", func() bool {
		for _, r := range srv.Resumes() {
			if r.OK && r.Shard == 0 {
				return true
			}
		}
		return false
	})
	send("after", 5)
	waitProbes(t, "every message", 10*time.Second, []*probe{p}, func() bool { return p.count(isEv("message_create")) >= len(want) })

	counts := map[string]int{}
	var seqs []int
	for _, ev := range p.snapshot() {
		if ev.Ev == "message_create" {
			counts[ev.Content]++
		}
		if ev.Ev == "raw" && ev.Shard == 0 {
			seqs = append(seqs, ev.Seq)
		}
	}
	for _, c := range want {
		if counts[c] != 1 {
			t.Fatalf("message %q seen %d times, want exactly once (all: %v)", c, counts[c], counts)
		}
	}
	// Shard 0 saw every sequence number once, in order, across the reconnect.
	for i, s := range seqs {
		if s != i+1 {
			t.Fatalf("shard 0 sequence %v is not 1..n without gaps or repeats", seqs)
		}
	}
	if p.count(func(ev probeEvent) bool { return ev.Ev == "resumed" && ev.Shard == 0 }) != 1 {
		t.Fatal("probe did not report RESUMED on shard 0")
	}
	if st := srv.Stats(); st.Identifies != 2 || st.ResumeURLHits < 1 {
		t.Fatalf("identifies %d resume url hits %d", st.Identifies, st.ResumeURLHits)
	}
}

func TestDisgoIdentifyViolationAcrossProcesses(t *testing.T) {
	t.Parallel()
	// Two processes, each with disgo's default per-process limiter, both own bucket 0
	// of max_concurrency 1: their first identifies land together.
	srv := newTestServer(t, Options{Shards: 2, MaxConcurrency: 1, IdentifyWindow: 2 * time.Second, World: WorldOptions{Guilds: 4}})
	a := startProbe(t, srv, "a", probeConfig{shards: "0", count: 2})
	b := startProbe(t, srv, "b", probeConfig{shards: "1", count: 2})
	testwait.For(t, 15*time.Second, "a violation", func() bool { return len(srv.Violations()) > 0 })
	v := srv.Violations()[0]
	if v.Bucket != 0 || v.SincePrevious >= 2*time.Second || v.Action != ViolationRecord {
		t.Fatalf("violation %+v", v)
	}
	// The default action only records, so both still come up.
	waitProbes(t, "both ready", 10*time.Second, []*probe{a, b}, func() bool {
		return a.count(isEv("ready")) == 1 && b.count(isEv("ready")) == 1
	})
}

func TestDisgoIdentifyWithinLimits(t *testing.T) {
	t.Parallel()
	// Same two-process split, but max_concurrency 2 and shards placed so that each
	// process owns one bucket; inside a process disgo spaces identifies by the
	// identify wait, which is longer than the window. No violation may be recorded.
	srv := newTestServer(t, Options{Shards: 4, MaxConcurrency: 2, IdentifyWindow: 2 * time.Second, World: WorldOptions{Guilds: 8}})
	a := startProbe(t, srv, "even", probeConfig{shards: "0,2", count: 4, identifyWait: 2500 * time.Millisecond})
	b := startProbe(t, srv, "odd", probeConfig{shards: "1,3", count: 4, identifyWait: 2500 * time.Millisecond})
	waitProbes(t, "all shards ready", 20*time.Second, []*probe{a, b}, func() bool {
		return a.count(isEv("ready")) == 2 && b.count(isEv("ready")) == 2
	})
	if v := srv.Violations(); len(v) != 0 {
		t.Fatalf("violations: %+v", v)
	}
	ids := srv.Identifies()
	if len(ids) != 4 {
		t.Fatalf("%d identifies", len(ids))
	}
	last := map[int]time.Time{}
	for _, id := range ids {
		if prev, ok := last[id.Bucket]; ok && id.At.Sub(prev) < 2*time.Second {
			t.Fatalf("bucket %d identified twice within %s", id.Bucket, id.At.Sub(prev))
		}
		last[id.Bucket] = id.At
	}
}

func TestDisgoFaultInjection(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, Options{Shards: 2, MaxConcurrency: 2, World: WorldOptions{Guilds: 4}})
	p := startProbe(t, srv, "faults", probeConfig{shards: "0,1", count: 2, identifyWait: 200 * time.Millisecond})
	probes := []*probe{p}
	waitProbes(t, "both shards ready", 15*time.Second, probes, func() bool { return p.count(isEv("ready")) == 2 })
	okResumes := func(shard int) int {
		n := 0
		for _, r := range srv.Resumes() {
			if r.OK && r.Shard == shard {
				n++
			}
		}
		return n
	}
	identifies := func(shard int) int {
		n := 0
		for _, id := range srv.Identifies() {
			if id.Shard == shard {
				n++
			}
		}
		return n
	}

	// op 7 RECONNECT: disgo resumes.
	if err := srv.Reconnect(0); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "resume after RECONNECT", func() bool { return okResumes(0) == 1 })

	// op 9 d=false: disgo identifies again.
	if err := srv.InvalidateSession(1, false); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "identify after INVALID_SESSION", func() bool { return identifies(1) == 2 })
	waitProbes(t, "second READY on shard 1", 10*time.Second, probes, func() bool {
		return p.count(func(ev probeEvent) bool { return ev.Ev == "ready" && ev.Shard == 1 }) == 2
	})

	// op 9 d=true: disgo resumes.
	if err := srv.InvalidateSession(0, true); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "resume after resumable INVALID_SESSION", func() bool { return okResumes(0) == 2 })

	// Close 4009 invalidates the session: disgo's RESUME is refused and it identifies.
	testwait.For(t, 5*time.Second, "shard 0 attached", func() bool { st, _ := srv.ShardStatus(0); return st.Ready })
	if err := srv.CloseShard(0, 4009); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 15*time.Second, "identify after 4009", func() bool { return identifies(0) == 2 })
	if !slices.ContainsFunc(srv.Resumes(), func(r ResumeRecord) bool { return !r.OK && r.Shard == 0 }) {
		t.Fatal("no refused RESUME recorded after 4009")
	}
	testwait.For(t, 10*time.Second, "both shards ready", func() bool { return srv.ShardsReady(2) })
}

func TestDisgoReplyOverREST(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, Options{EchoMessages: true, World: WorldOptions{Guilds: 2}})
	p := startProbe(t, srv, "reply", probeConfig{reply: true})
	waitProbes(t, "ready", 15*time.Second, []*probe{p}, func() bool { return p.count(isEv("guild_create")) == 2 })
	world := srv.World()
	g := world.Guilds[1]
	ch, _ := world.FirstTextChannel(g.ID)
	if _, err := srv.SendUserMessage(ch.ID, 0, "ping"); err != nil {
		t.Fatal(err)
	}
	waitProbes(t, "the echoed pong", 10*time.Second, []*probe{p}, func() bool {
		return p.count(func(ev probeEvent) bool { return ev.Ev == "message_create" && ev.Content == "pong" }) == 1 &&
			p.count(isEv("replied")) == 1
	})
	msgs := srv.Messages()
	if len(msgs) != 1 || msgs[0].Content != "pong" || msgs[0].ChannelID != ch.ID || msgs[0].GuildID != g.ID {
		t.Fatalf("messages %+v", msgs)
	}

	// Joining a guild at runtime reaches disgo as a GuildJoin.
	joined, _, err := srv.JoinGuild("Brand New")
	if err != nil {
		t.Fatal(err)
	}
	waitProbes(t, "the GuildJoin", 10*time.Second, []*probe{p}, func() bool {
		return p.count(func(ev probeEvent) bool {
			return ev.Ev == "guild_create" && ev.Kind == "join" && ev.GuildID == joined.ID.String()
		}) == 1
	})
}

// A half-open connection (the server stops sending, the socket stays up) is
// noticed by disgo through the missing HEARTBEAT_ACK; it RESUMEs on a new
// connection and receives what was dispatched meanwhile, once.
func TestDisgoHalfOpenConnectionResumes(t *testing.T) {
	t.Parallel()
	srv := newTestServer(t, Options{Shards: 1, MaxConcurrency: 1, HeartbeatInterval: 300 * time.Millisecond,
		World: WorldOptions{Guilds: 2}})
	p := startProbe(t, srv, "stall", probeConfig{shards: "0", count: 1})
	waitProbes(t, "shard ready", 15*time.Second, []*probe{p}, func() bool { return p.count(isEv("ready")) == 1 })

	world := srv.World()
	g := world.Guilds[0]
	ch, _ := world.FirstTextChannel(g.ID)
	if err := srv.StallShard(0); err != nil {
		t.Fatal(err)
	}
	const n = 5
	for i := 0; i < n; i++ {
		content := fmt.Sprintf("stalled-%d", i)
		if _, err := srv.Dispatch(g.ID, "MESSAGE_CREATE", messagePayload(srv.newID(), ch.ID, g.ID, world.Users[0].ID, content)); err != nil {
			t.Fatal(err)
		}
	}
	testwait.For(t, 15*time.Second, "a RESUME after the stall", func() bool {
		return slices.ContainsFunc(srv.Resumes(), func(r ResumeRecord) bool { return r.OK && r.Shard == 0 })
	})
	waitProbes(t, "every stalled message", 10*time.Second, []*probe{p}, func() bool { return p.count(isEv("message_create")) >= n })
	counts := map[string]int{}
	for _, ev := range p.snapshot() {
		if ev.Ev == "message_create" {
			counts[ev.Content]++
		}
	}
	for i := 0; i < n; i++ {
		if c := counts[fmt.Sprintf("stalled-%d", i)]; c != 1 {
			t.Fatalf("message stalled-%d seen %d times, want once (all: %v)", i, c, counts)
		}
	}
	if st := srv.Stats(); st.Identifies != 1 || st.Stalls != 1 {
		t.Fatalf("identifies %d stalls %d, want 1 and 1", st.Identifies, st.Stalls)
	}
}

// A real disgo bot that identifies without MESSAGE_CONTENT gets guild messages
// with empty content, but the text of DMs and of messages that mention it; with
// the intent it gets the text.
func TestDisgoMessageContentIntent(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name        string
		intents     gateway.Intents
		wantContent bool
	}{
		{"without", gateway.IntentGuilds | gateway.IntentGuildMessages | gateway.IntentDirectMessages, false},
		{"with", gateway.IntentGuilds | gateway.IntentGuildMessages | gateway.IntentDirectMessages | gateway.IntentMessageContent, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			srv := newTestServer(t, Options{World: WorldOptions{Guilds: 1}})
			p := startProbe(t, srv, "content-"+tc.name, probeConfig{intents: &tc.intents})
			waitProbes(t, "ready", 15*time.Second, []*probe{p}, func() bool { return p.count(isEv("guild_create")) == 1 })
			world := srv.World()
			g := world.Guilds[0]
			ch, _ := world.FirstTextChannel(g.ID)
			user := world.Users[0]

			plain := messagePayload(srv.NewID(), ch.ID, g.ID, user.ID, "plain")
			mention := messagePayload(srv.NewID(), ch.ID, g.ID, user.ID, "<@"+srv.AppID().String()+"> mention")
			mention["mentions"] = []any{map[string]any{"id": srv.AppID(), "username": "fakebot", "discriminator": "0", "bot": true}}
			dm := messagePayload(srv.NewID(), srv.NewID(), 0, user.ID, "direct")
			delete(dm, "guild_id")
			delete(dm, "member")
			for _, m := range []map[string]any{plain, mention} {
				if _, err := srv.Dispatch(g.ID, "MESSAGE_CREATE", m); err != nil {
					t.Fatal(err)
				}
			}
			if _, err := srv.DispatchToShard(0, "MESSAGE_CREATE", dm); err != nil {
				t.Fatal(err)
			}
			waitProbes(t, "three messages", 10*time.Second, []*probe{p}, func() bool { return p.count(isEv("message_create")) == 3 })
			got := map[string]string{}
			for _, ev := range p.snapshot() {
				if ev.Ev == "message_create" {
					got[ev.ID] = ev.Content
				}
			}
			wantPlain := ""
			if tc.wantContent {
				wantPlain = "plain"
			}
			for id, want := range map[any]string{plain["id"]: wantPlain, mention["id"]: mention["content"].(string), dm["id"]: "direct"} {
				if c := got[fmt.Sprint(id)]; c != want {
					t.Errorf("message %v: content %q, want %q", id, c, want)
				}
			}
		})
	}
}
