package discordtest

import (
	"encoding/json"
	"fmt"
	"testing"
	"time"

	"github.com/disgoorg/disgo/gateway"
	"github.com/disgoorg/snowflake/v2"
	"github.com/gorilla/websocket"
	"github.com/megane-go/megane/internal/testwait"
)

func TestGatewayHelloAndHeartbeatACK(t *testing.T) {
	srv := newTestServer(t, Options{HeartbeatInterval: 1500 * time.Millisecond, HeartbeatACKDelay: 20 * time.Millisecond})
	c := dial(t, srv, "", "")
	if got := c.hello(); got != 1500 {
		t.Fatalf("heartbeat_interval = %d, want 1500", got)
	}
	// A heartbeat is allowed before IDENTIFY and is acknowledged after the delay.
	start := time.Now()
	c.send(opHeartbeat, nil)
	f := c.read()
	if f.Op != opHeartbeatACK {
		t.Fatalf("want ACK, got %s", f.raw)
	}
	if d := time.Since(start); d < 20*time.Millisecond {
		t.Fatalf("ACK after %s, want at least the 20ms delay", d)
	}
	testwait.For(t, 2*time.Second, "heartbeat count", func() bool { return srv.Stats().Heartbeats == 1 })
}

func TestGatewayIdentifyReadyAndOwnership(t *testing.T) {
	const shards = 4
	srv := newTestServer(t, Options{MaxConcurrency: shards, World: WorldOptions{Seed: 7, Guilds: 12}})
	world := srv.World()
	seen := map[string]int{}
	for shard := 0; shard < shards; shard++ {
		want := world.GuildsOfShard(shard, shards)
		if len(want) != 3 {
			t.Fatalf("shard %d owns %d guilds, want an even 3", shard, len(want))
		}
		c := dial(t, srv, "", "")
		c.hello()
		rs := c.identify(srv.Token(), shard, shards, len(want))
		if len(rs.ID) != 32 {
			t.Fatalf("session id %q, want 32 hex chars", rs.ID)
		}
		if rs.ResumeURL != srv.ResumeURL() {
			t.Fatalf("resume_gateway_url %q, want %q", rs.ResumeURL, srv.ResumeURL())
		}
		for _, gid := range rs.Guilds {
			id := snowflake.MustParse(gid)
			if ShardFor(id, shards) != shard {
				t.Fatalf("guild %s sent to shard %d, belongs to %d", gid, shard, ShardFor(id, shards))
			}
			seen[gid]++
		}
	}
	if len(seen) != len(world.Guilds) {
		t.Fatalf("saw %d distinct guilds, want %d", len(seen), len(world.Guilds))
	}
	if got := srv.SessionStartRemaining(); got != 1000-shards {
		t.Fatalf("remaining = %d, want %d", got, 1000-shards)
	}
	if !srv.ShardsReady(shards) {
		t.Fatal("ShardsReady false after all shards identified")
	}
	ids := srv.Identifies()
	if len(ids) != shards || len(srv.Violations()) != 0 {
		t.Fatalf("identifies %d violations %d", len(ids), len(srv.Violations()))
	}
}

func TestGatewayGuildCreatePayload(t *testing.T) {
	srv := newTestServer(t, Options{World: WorldOptions{Guilds: 1, ChannelsPerGuild: 7, RolesPerGuild: 4, MembersPerGuild: 3}})
	c := dial(t, srv, "", "")
	c.hello()
	c.send(opIdentify, identifyPayload(srv.Token(), 0, 1))
	c.read() // READY
	f := c.read()
	var m gateway.Message
	if err := json.Unmarshal(f.raw, &m); err != nil {
		t.Fatal(err)
	}
	gc, ok := m.D.(gateway.EventGuildCreate)
	if !ok {
		t.Fatalf("decoded as %T", m.D)
	}
	g := srv.World().Guilds[0]
	if gc.ID != g.ID || gc.Name != g.Name || gc.OwnerID != g.OwnerID {
		t.Fatalf("guild %v %q %v, want %v %q %v", gc.ID, gc.Name, gc.OwnerID, g.ID, g.Name, g.OwnerID)
	}
	if len(gc.Channels) != 7 || len(gc.Roles) != 4 || len(gc.Members) != 4 || gc.MemberCount != 4 {
		t.Fatalf("channels %d roles %d members %d count %d", len(gc.Channels), len(gc.Roles), len(gc.Members), gc.MemberCount)
	}
	types := map[int]int{}
	for _, ch := range gc.Channels {
		types[int(ch.Type())]++
	}
	if types[ChannelTypeText] == 0 || types[ChannelTypeVoice] == 0 || types[ChannelTypeCategory] != 1 {
		t.Fatalf("channel type mix %v, want text, voice and one category", types)
	}
	if gc.Roles[0].ID != g.ID || gc.Roles[0].Name != "@everyone" || gc.Roles[0].Permissions == 0 {
		t.Fatalf("@everyone role %+v", gc.Roles[0])
	}
	for _, mem := range gc.Members {
		if mem.User.ID == 0 || mem.JoinedAt.IsZero() {
			t.Fatalf("member without user or joined_at: %+v", mem)
		}
	}
}

func TestGatewayCompression(t *testing.T) {
	for _, comp := range []string{"zlib-stream", "zstd-stream"} {
		t.Run(comp, func(t *testing.T) {
			t.Parallel()
			srv := newTestServer(t, Options{World: WorldOptions{Guilds: 6}})
			c := dial(t, srv, "", comp)
			c.hello()
			rs := c.identify(srv.Token(), 0, 1, 6)
			// Later payloads in the same stream decode too (the stream state carries over).
			c.send(opHeartbeat, rs.Seq)
			if f := c.read(); f.Op != opHeartbeatACK {
				t.Fatalf("want ACK, got %s", f.raw)
			}
			for i := 0; i < 20; i++ {
				if _, err := srv.Dispatch(0, "GUILD_UPDATE", map[string]any{"id": rs.Guilds[0], "name": fmt.Sprintf("n%d", i)}); err != nil {
					t.Fatal(err)
				}
			}
			for i := 0; i < 20; i++ {
				f := c.read()
				if f.typ() != "GUILD_UPDATE" || f.seq() != rs.Seq+1+i {
					t.Fatalf("event %d: %s", i, f.raw)
				}
			}
			if srv.Stats().BytesOut == 0 {
				t.Fatal("no bytes counted")
			}
		})
	}
}

func TestGatewayResumeReplaysMissedEvents(t *testing.T) {
	srv := newTestServer(t, Options{World: WorldOptions{Guilds: 2}})
	c := dial(t, srv, "", "")
	c.hello()
	rs := c.identify(srv.Token(), 0, 1, 2)
	gid := snowflake.MustParse(rs.Guilds[0])

	// One event arrives while connected, then the connection drops (no close frame).
	if _, err := srv.Dispatch(gid, "GUILD_UPDATE", map[string]any{"id": gid, "name": "a"}); err != nil {
		t.Fatal(err)
	}
	if f := c.read(); f.seq() != rs.Seq+1 {
		t.Fatalf("got %s", f.raw)
	}
	lastSeen := rs.Seq + 1
	if err := srv.DropShard(0); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 2*time.Second, "detach", func() bool {
		st, _ := srv.ShardStatus(0)
		return !st.Connected && st.Resumable
	})
	// Events dispatched while detached are sequenced and buffered.
	for i := 0; i < 3; i++ {
		d, err := srv.Dispatch(gid, "GUILD_UPDATE", map[string]any{"id": gid, "name": fmt.Sprintf("offline-%d", i)})
		if err != nil || d.Attached || d.Seq != lastSeen+1+i {
			t.Fatalf("dispatch while detached: %+v %v", d, err)
		}
	}

	c2 := dial(t, srv, "/resume", "")
	c2.hello()
	c2.send(opResume, map[string]any{"token": srv.Token(), "session_id": rs.ID, "seq": lastSeen})
	for i := 0; i < 3; i++ {
		f := c2.read()
		if f.typ() != "GUILD_UPDATE" || f.seq() != lastSeen+1+i {
			t.Fatalf("replay %d: %s", i, f.raw)
		}
	}
	if f := c2.read(); f.typ() != "RESUMED" || f.seq() != lastSeen+4 {
		t.Fatalf("want RESUMED s=%d, got %s", lastSeen+4, f.raw)
	}
	res := srv.Resumes()
	if len(res) != 1 || !res[0].OK || res[0].Replayed != 3 || res[0].FromSeq != lastSeen || !res[0].ResumeURL {
		t.Fatalf("resume record %+v", res)
	}
	if st := srv.Stats(); st.ResumeURLHits != 1 || st.Identifies != 1 {
		t.Fatalf("resume url hits %d identifies %d", st.ResumeURLHits, st.Identifies)
	}
}

func TestGatewayResumeRefused(t *testing.T) {
	srv := newTestServer(t, Options{World: WorldOptions{Guilds: 1}, ReplayBuffer: 3})
	c := dial(t, srv, "", "")
	c.hello()
	rs := c.identify(srv.Token(), 0, 1, 1)
	for i := 0; i < 5; i++ {
		if _, err := srv.DispatchToShard(0, "TYPING_START", map[string]any{"channel_id": "1", "user_id": "2", "timestamp": 1}); err != nil {
			t.Fatal(err)
		}
	}
	c.readUntil(func(f gwFrame) bool { return f.seq() == rs.Seq+5 })

	cases := []struct {
		name, session string
		seq           int
		reason        string
	}{
		{"unknown session", "0123456789abcdef0123456789abcdef", 1, "unknown session"},
		{"seq ahead", rs.ID, rs.Seq + 99, "seq ahead"},
		{"seq older than the replay buffer", rs.ID, 1, "seq too old"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c2 := dial(t, srv, "/resume", "")
			c2.hello()
			c2.send(opResume, map[string]any{"token": srv.Token(), "session_id": tc.session, "seq": tc.seq})
			if f := c2.read(); f.Op != opInvalidSession || string(f.D) != "false" {
				t.Fatalf("want op 9 false, got %s", f.raw)
			}
			res := srv.Resumes()
			if last := res[len(res)-1]; last.OK || last.Reason != tc.reason {
				t.Fatalf("record %+v, want reason %q", last, tc.reason)
			}
		})
	}
}

func TestGatewayResumeElsewhereCloses4000(t *testing.T) {
	srv := newTestServer(t, Options{World: WorldOptions{Guilds: 1}})
	c := dial(t, srv, "", "")
	c.hello()
	rs := c.identify(srv.Token(), 0, 1, 1)
	c2 := dial(t, srv, "/resume", "")
	c2.hello()
	c2.send(opResume, map[string]any{"token": srv.Token(), "session_id": rs.ID, "seq": rs.Seq})
	if f := c2.read(); f.typ() != "RESUMED" {
		t.Fatalf("want RESUMED, got %s", f.raw)
	}
	if code := c.expectClose(); code != 4000 {
		t.Fatalf("old connection closed with %d, want 4000", code)
	}
	st, _ := srv.ShardStatus(0)
	if !st.Ready || st.SessionID != rs.ID {
		t.Fatalf("shard state %+v", st)
	}
}

func TestGatewayClientCloseCodes(t *testing.T) {
	for _, tc := range []struct {
		code      int
		resumable bool
	}{{1000, false}, {1001, false}, {1012, true}, {4000, true}} {
		t.Run(fmt.Sprint(tc.code), func(t *testing.T) {
			srv := newTestServer(t, Options{World: WorldOptions{Guilds: 1}})
			c := dial(t, srv, "", "")
			c.hello()
			rs := c.identify(srv.Token(), 0, 1, 1)
			_ = c.ws.WriteMessage(websocket.CloseMessage, websocket.FormatCloseMessage(tc.code, ""))
			testwait.For(t, 2*time.Second, "detach", func() bool {
				st, _ := srv.ShardStatus(0)
				return !st.Connected
			})
			c2 := dial(t, srv, "/resume", "")
			c2.hello()
			c2.send(opResume, map[string]any{"token": srv.Token(), "session_id": rs.ID, "seq": rs.Seq})
			f := c2.read()
			if tc.resumable && f.typ() != "RESUMED" || !tc.resumable && f.Op != opInvalidSession {
				t.Fatalf("after client close %d: %s", tc.code, f.raw)
			}
		})
	}
}

func TestGatewayCloseCodes(t *testing.T) {
	four := gateway.IntentGuildMembers
	cases := []struct {
		name string
		opts Options
		do   func(c *wsClient, srv *Server)
		want int
	}{
		{"bad token", Options{}, func(c *wsClient, srv *Server) {
			c.send(opIdentify, identifyPayload("bm9wZQ.bad.token", 0, 1))
		}, 4004},
		{"shard id out of range", Options{}, func(c *wsClient, srv *Server) {
			c.send(opIdentify, identifyPayload(srv.Token(), 4, 4))
		}, 4010},
		{"negative shard", Options{}, func(c *wsClient, srv *Server) {
			c.send(opIdentify, identifyPayload(srv.Token(), -1, 2))
		}, 4010},
		{"unknown intent bit", Options{}, func(c *wsClient, srv *Server) {
			p := identifyPayload(srv.Token(), 0, 1)
			p["intents"] = 1 << 40
			c.send(opIdentify, p)
		}, 4013},
		{"privileged intent not allowed", Options{PrivilegedIntents: &four}, func(c *wsClient, srv *Server) {
			p := identifyPayload(srv.Token(), 0, 1)
			p["intents"] = int(gateway.IntentMessageContent)
			c.send(opIdentify, p)
		}, 4014},
		{"sharding required", Options{MaxGuildsPerShard: 2}, func(c *wsClient, srv *Server) {
			c.send(opIdentify, identifyPayload(srv.Token(), 0, 1))
		}, 4011},
		{"unknown opcode", Options{}, func(c *wsClient, srv *Server) { c.send(42, nil) }, 4001},
		{"bad json", Options{}, func(c *wsClient, srv *Server) { c.sendRaw(`{"op":`) }, 4002},
		{"not authenticated", Options{}, func(c *wsClient, srv *Server) { c.send(opPresenceUpdate, map[string]any{}) }, 4003},
		{"second identify", Options{}, func(c *wsClient, srv *Server) {
			c.identify(srv.Token(), 0, 1, len(srv.World().Guilds))
			c.send(opIdentify, identifyPayload(srv.Token(), 0, 1))
		}, 4005},
		{"too many commands", Options{}, func(c *wsClient, srv *Server) {
			for i := 0; i <= commandLimit; i++ {
				c.send(opHeartbeat, nil)
			}
		}, 4008},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			tc.opts.World.Guilds = 3
			srv := newTestServer(t, tc.opts)
			c := dial(t, srv, "", "")
			c.hello()
			tc.do(c, srv)
			if got := c.expectClose(); got != tc.want {
				t.Fatalf("closed with %d, want %d", got, tc.want)
			}
		})
	}
}

func TestGatewayIdentifyConcurrency(t *testing.T) {
	for _, action := range []string{ViolationRecord, ViolationInvalidSession, ViolationClose4008} {
		t.Run(action, func(t *testing.T) {
			t.Parallel()
			srv := newTestServer(t, Options{MaxConcurrency: 2, IdentifyWindow: time.Hour, ViolationAction: action, World: WorldOptions{Guilds: 4}})
			// Shards 0 and 1 are in different buckets: no violation.
			for shard := 0; shard < 2; shard++ {
				c := dial(t, srv, "", "")
				c.hello()
				c.identify(srv.Token(), shard, 4, 1)
			}
			if n := len(srv.Violations()); n != 0 {
				t.Fatalf("%d violations for different buckets", n)
			}
			// Shard 2 shares bucket 0 with shard 0 within the window.
			c := dial(t, srv, "", "")
			c.hello()
			switch action {
			case ViolationRecord:
				c.identify(srv.Token(), 2, 4, 1)
			case ViolationInvalidSession:
				c.send(opIdentify, identifyPayload(srv.Token(), 2, 4))
				if f := c.read(); f.Op != opInvalidSession || string(f.D) != "false" {
					t.Fatalf("want op 9 false, got %s", f.raw)
				}
			case ViolationClose4008:
				c.send(opIdentify, identifyPayload(srv.Token(), 2, 4))
				if code := c.expectClose(); code != 4008 {
					t.Fatalf("closed with %d, want 4008", code)
				}
			}
			v := srv.Violations()
			if len(v) != 1 || v[0].Shard != 2 || v[0].Bucket != 0 || v[0].Action != action || v[0].SincePrevious <= 0 {
				t.Fatalf("violations %+v", v)
			}
			wantRemaining := 998
			if action == ViolationRecord {
				wantRemaining = 997
			}
			if got := srv.SessionStartRemaining(); got != wantRemaining {
				t.Fatalf("remaining %d, want %d", got, wantRemaining)
			}
		})
	}
}

func TestGatewayNewIdentifySupersedes(t *testing.T) {
	// The default violation action only records, so the second identify goes through.
	srv := newTestServer(t, Options{World: WorldOptions{Guilds: 1}})
	c := dial(t, srv, "", "")
	c.hello()
	old := c.identify(srv.Token(), 0, 1, 1)
	c2 := dial(t, srv, "", "")
	c2.hello()
	c2.identify(srv.Token(), 0, 1, 1)
	if f := c.read(); f.Op != opInvalidSession || string(f.D) != "false" {
		t.Fatalf("old connection got %s, want op 9 false", f.raw)
	}
	for _, s := range srv.Sessions() {
		if s.ID == old.ID && !s.Invalidated {
			t.Fatalf("old session still valid: %+v", s)
		}
	}
}

func TestGatewayRequestGuildMembers(t *testing.T) {
	srv := newTestServer(t, Options{World: WorldOptions{Guilds: 1, MembersPerGuild: 4}})
	c := dial(t, srv, "", "")
	c.hello()
	rs := c.identify(srv.Token(), 0, 1, 1)
	c.send(opRequestGuildMembers, map[string]any{"guild_id": rs.Guilds[0], "query": "", "limit": 0, "nonce": "n1"})
	f := c.read()
	var m gateway.Message
	if err := json.Unmarshal(f.raw, &m); err != nil {
		t.Fatal(err)
	}
	chunk, ok := m.D.(gateway.EventGuildMembersChunk)
	if !ok || f.typ() != "GUILD_MEMBERS_CHUNK" {
		t.Fatalf("got %T %s", m.D, f.raw)
	}
	if len(chunk.Members) != 5 || chunk.Nonce != "n1" || chunk.ChunkCount != 1 {
		t.Fatalf("chunk: %d members, nonce %q, count %d", len(chunk.Members), chunk.Nonce, chunk.ChunkCount)
	}
	c.send(opRequestGuildMembers, map[string]any{"guild_id": rs.Guilds[0], "user_ids": []string{"1", srv.AppID().String()}})
	f = c.read()
	if err := json.Unmarshal(f.raw, &m); err != nil {
		t.Fatal(err)
	}
	chunk = m.D.(gateway.EventGuildMembersChunk)
	if len(chunk.Members) != 1 || len(chunk.NotFound) != 1 {
		t.Fatalf("by ids: %d members, not found %v", len(chunk.Members), chunk.NotFound)
	}
}

func TestGatewayHeartbeatTimeout(t *testing.T) {
	srv := newTestServer(t, Options{HeartbeatTimeout: 100 * time.Millisecond, World: WorldOptions{Guilds: 1}})
	c := dial(t, srv, "", "")
	c.hello()
	rs := c.identify(srv.Token(), 0, 1, 1)
	if code := c.expectClose(); code != 4009 {
		t.Fatalf("closed with %d, want 4009", code)
	}
	c2 := dial(t, srv, "/resume", "")
	c2.hello()
	c2.send(opResume, map[string]any{"token": srv.Token(), "session_id": rs.ID, "seq": rs.Seq})
	if f := c2.read(); f.Op != opInvalidSession {
		t.Fatalf("resume after 4009: %s", f.raw)
	}
}

func TestGatewayFaultInjection(t *testing.T) {
	srv := newTestServer(t, Options{World: WorldOptions{Guilds: 1}})
	c := dial(t, srv, "", "")
	c.hello()
	c.identify(srv.Token(), 0, 1, 1)

	if err := srv.Reconnect(0); err != nil {
		t.Fatal(err)
	}
	if f := c.read(); f.Op != opReconnect {
		t.Fatalf("want op 7, got %s", f.raw)
	}
	if err := srv.RequestHeartbeat(0); err != nil {
		t.Fatal(err)
	}
	if f := c.read(); f.Op != opHeartbeat {
		t.Fatalf("want op 1, got %s", f.raw)
	}
	if err := srv.InvalidateSession(0, true); err != nil {
		t.Fatal(err)
	}
	if f := c.read(); f.Op != opInvalidSession || string(f.D) != "true" {
		t.Fatalf("want op 9 true, got %s", f.raw)
	}
	if err := srv.CloseShard(0, 4000); err != nil {
		t.Fatal(err)
	}
	if code := c.expectClose(); code != 4000 {
		t.Fatalf("closed with %d", code)
	}
	if err := srv.Reconnect(3); err == nil {
		t.Fatal("Reconnect of an unknown shard succeeded")
	}
}
