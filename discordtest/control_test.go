package discordtest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/disgoorg/disgo/gateway"
	"github.com/disgoorg/snowflake/v2"
)

func TestControlHTTP(t *testing.T) {
	srv := newTestServer(t, Options{World: WorldOptions{Guilds: 2}})
	c := dial(t, srv, "", "")
	c.hello()
	rs := c.identify(srv.Token(), 0, 1, 2)

	// Another process injects an event.
	body := fmt.Sprintf(`{"guild_id":"%s","t":"GUILD_UPDATE","d":{"id":"%s","name":"from http"}}`, rs.Guilds[0], rs.Guilds[0])
	status, _, b := httpDo(t, "POST", srv.URL()+"/_fake/dispatch", "", body)
	var d Dispatched
	if err := json.Unmarshal(b, &d); status != 200 || err != nil || d.Seq != rs.Seq+1 || d.SessionID != rs.ID || !d.Attached {
		t.Fatalf("dispatch: %d %s", status, b)
	}
	if f := c.read(); f.typ() != "GUILD_UPDATE" || f.seq() != rs.Seq+1 {
		t.Fatalf("got %s", f.raw)
	}
	status, _, b = httpDo(t, "POST", srv.URL()+"/_fake/dispatch", "", `{"shard":0,"t":"CHANNEL_CREATE","d":{"id":"5","type":1}}`)
	if status != http.StatusBadRequest {
		t.Fatalf("bad dispatch accepted: %d %s", status, b)
	}
	status, _, _ = httpDo(t, "POST", srv.URL()+"/_fake/dispatch", "", `{"shard":3,"t":"GUILD_UPDATE","d":{"id":"1"}}`)
	if status != http.StatusConflict {
		t.Fatalf("dispatch to a missing shard: %d", status)
	}

	// Control actions.
	status, _, b = httpDo(t, "POST", srv.URL()+"/_fake/control?shard=0&action=reconnect", "", "")
	if status != 200 {
		t.Fatalf("control: %d %s", status, b)
	}
	if f := c.read(); f.Op != opReconnect {
		t.Fatalf("got %s", f.raw)
	}
	status, _, _ = httpDo(t, "POST", srv.URL()+"/_fake/control?shard=0&action=explode", "", "")
	if status != http.StatusBadRequest {
		t.Fatalf("unknown action: %d", status)
	}
	status, _, _ = httpDo(t, "POST", srv.URL()+"/_fake/control?shard=0&action=close&code=4000", "", "")
	if status != 200 || c.expectClose() != 4000 {
		t.Fatalf("close action: %d", status)
	}

	// Runtime configuration, by query and by JSON body.
	status, _, b = httpDo(t, "POST", srv.URL()+"/_fake/config?identify_window=2s&max_concurrency=4", "", "")
	if status != 200 {
		t.Fatalf("config: %d %s", status, b)
	}
	status, _, b = httpDo(t, "POST", srv.URL()+"/_fake/config", "", `{"violation_action":"close4008","hello_delay":"10ms"}`)
	if status != 200 {
		t.Fatalf("config: %d %s", status, b)
	}
	want := Config{IdentifyWindow: 2 * time.Second, MaxConcurrency: 4, ViolationAction: ViolationClose4008, HelloDelay: 10 * time.Millisecond}
	if got := srv.Config(); got != want {
		t.Fatalf("config %+v, want %+v", got, want)
	}
	var viaHTTP Config
	if err := json.Unmarshal(b, &viaHTTP); err != nil || viaHTTP != want || !strings.Contains(string(b), `"identify_window":"2s"`) {
		t.Fatalf("config body %s: %+v %v", b, viaHTTP, err)
	}
	status, _, _ = httpDo(t, "POST", srv.URL()+"/_fake/config", "", `{"violation_action":"shrug"}`)
	if status != http.StatusBadRequest {
		t.Fatalf("bad violation action: %d", status)
	}

	// Reports.
	var st Stats
	status, _, b = httpDo(t, "GET", srv.URL()+"/_fake/stats", "", "")
	if err := json.Unmarshal(b, &st); status != 200 || err != nil || st.Identifies != 1 || len(st.Identify) != 1 || len(st.Sessions) != 1 || st.ReconnectsSent != 1 {
		t.Fatalf("stats: %d %s", status, b)
	}
	var w World
	status, _, b = httpDo(t, "GET", srv.URL()+"/_fake/world", "", "")
	if err := json.Unmarshal(b, &w); status != 200 || err != nil || len(w.Guilds) != 2 {
		t.Fatalf("world: %d %v", status, err)
	}
	if g, ok := w.Guild(w.Guilds[0].ID); !ok || g.Name != "from http" {
		t.Fatalf("decoded world lookup: %+v", g)
	}
	status, _, b = httpDo(t, "GET", srv.URL()+"/_fake/messages", "", "")
	if status != 200 || strings.TrimSpace(string(b)) != "[]" {
		t.Fatalf("messages: %d %s", status, b)
	}
	status, _, b = httpDo(t, "POST", srv.URL()+"/_fake/ratelimit?count=1&retry_after=1s", "", "")
	if status != 200 {
		t.Fatalf("ratelimit: %d %s", status, b)
	}
	status, _, _ = httpDo(t, "GET", srv.RESTURL()+"/users/@me", "Bot "+srv.Token(), "")
	if status != http.StatusTooManyRequests {
		t.Fatalf("injected 429: %d", status)
	}
}

func TestMetrics(t *testing.T) {
	srv := newTestServer(t, Options{World: WorldOptions{Guilds: 1}})
	c := dial(t, srv, "", "")
	c.hello()
	c.identify(srv.Token(), 0, 1, 1)
	httpDo(t, "GET", srv.RESTURL()+"/gateway/bot", "Bot "+srv.Token(), "")
	status, _, b := httpDo(t, "GET", srv.URL()+"/_fake/metrics", "", "")
	if status != 200 {
		t.Fatalf("metrics: %d", status)
	}
	text := string(b)
	for _, want := range []string{
		"discordtest_gateway_identifies_total 1",
		"discordtest_gateway_connections_total 1",
		`discordtest_gateway_sessions{state="attached"} 1`,
		`discordtest_rest_requests_total{route="GET /gateway/bot",status="200"} 1`,
		"discordtest_session_start_remaining 999",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	if strings.Contains(text, "go_goroutines") {
		t.Error("metrics come from the global registry")
	}
}

func TestHelloDelay(t *testing.T) {
	srv := newTestServer(t, Options{HelloDelay: 150 * time.Millisecond})
	start := time.Now()
	c := dial(t, srv, "", "")
	c.hello()
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Fatalf("HELLO after %s", d)
	}
	srv.SetHelloDelay(0)
	start = time.Now()
	c = dial(t, srv, "", "")
	c.hello()
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Fatalf("HELLO after %s with no delay", d)
	}
}

func TestCloseDropsConnections(t *testing.T) {
	srv, err := NewServer(Options{World: WorldOptions{Guilds: 1}})
	if err != nil {
		t.Fatal(err)
	}
	c := dial(t, srv, "", "")
	c.hello()
	if err := srv.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.readErr(2 * time.Second); err == nil {
		t.Fatal("connection still open after Close")
	}
	if err := srv.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, err := srv.DispatchToShard(0, "GUILD_UPDATE", map[string]any{"id": "1"}); err != ErrClosed {
		t.Fatalf("dispatch after Close: %v", err)
	}
}

// TestControlMessageRoute: POST /_fake/message posts a user message with
// defaults filled in, as SendMessage does.
func TestControlMessageRoute(t *testing.T) {
	srv := newTestServer(t, Options{World: WorldOptions{Guilds: 2}})
	world := srv.World()
	g0, g1 := world.Guilds[0], world.Guilds[1]
	text1, _ := world.FirstTextChannel(g1.ID)
	human := func(g Guild) snowflake.ID {
		for _, m := range g.Members {
			if m.UserID != srv.AppID() {
				return m.UserID
			}
		}
		t.Fatalf("guild %s has no human", g.ID)
		return 0
	}

	// Without a session the message is built and refused with 409.
	status, _, b := httpDo(t, "POST", srv.URL()+"/_fake/message", "", `{"content":"early"}`)
	if status != http.StatusConflict || !strings.Contains(string(b), "no session") {
		t.Fatalf("without a session: %d %s", status, b)
	}

	c := dial(t, srv, "", "")
	c.hello()
	c.identifyIntents(gateway.IntentGuilds|gateway.IntentGuildMessages|gateway.IntentMessageContent, srv.Token(), 0, 1, 2)
	other := world.Users[len(world.Users)-1].ID
	cases := []struct {
		name                   string
		body                   string
		wantChannel, wantGuild snowflake.ID
		wantAuthor             snowflake.ID
		wantContent            string
		wantMentionsBot        bool
	}{
		{"defaults", `{"content":"!ping"}`, mustFirstText(t, world, g0.ID), g0.ID, human(g0), "!ping", false},
		{"guild", fmt.Sprintf(`{"guild_id":"%s","content":"hi"}`, g1.ID), text1.ID, g1.ID, human(g1), "hi", false},
		{"channel and author as numbers", fmt.Sprintf(`{"channel_id":%d,"author_id":%d,"content":"yo"}`, text1.ID, other), text1.ID, g1.ID, other, "yo", false},
		{"mention", fmt.Sprintf(`{"guild_id":"%s","content":"<@%s> ping"}`, g1.ID, srv.AppID()), text1.ID, g1.ID, human(g1), "<@" + srv.AppID().String() + "> ping", true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, _, b := httpDo(t, "POST", srv.URL()+"/_fake/message", "", tc.body)
			var sent SentMessage
			if err := json.Unmarshal(b, &sent); status != 200 || err != nil {
				t.Fatalf("%d %s", status, b)
			}
			if sent.ChannelID != tc.wantChannel || sent.GuildID != tc.wantGuild || sent.AuthorID != tc.wantAuthor || sent.ID == 0 || !sent.Dispatched.Attached {
				t.Fatalf("sent %+v, want channel %s guild %s author %s", sent, tc.wantChannel, tc.wantGuild, tc.wantAuthor)
			}
			f := c.read()
			var m struct {
				ID        snowflake.ID `json:"id"`
				ChannelID snowflake.ID `json:"channel_id"`
				GuildID   snowflake.ID `json:"guild_id"`
				Author    struct {
					ID snowflake.ID `json:"id"`
				} `json:"author"`
				Member   *json.RawMessage `json:"member"`
				Content  string           `json:"content"`
				Mentions []struct {
					ID snowflake.ID `json:"id"`
				} `json:"mentions"`
			}
			if err := json.Unmarshal(f.D, &m); err != nil || f.typ() != "MESSAGE_CREATE" {
				t.Fatalf("got %s", f.raw)
			}
			if m.ID != sent.ID || m.ChannelID != tc.wantChannel || m.GuildID != tc.wantGuild || m.Author.ID != tc.wantAuthor || m.Content != tc.wantContent {
				t.Fatalf("MESSAGE_CREATE %s", f.raw)
			}
			if tc.wantAuthor != other && m.Member == nil {
				t.Fatalf("member missing: %s", f.raw)
			}
			if got := len(m.Mentions) == 1 && m.Mentions[0].ID == srv.AppID(); got != tc.wantMentionsBot {
				t.Fatalf("mentions the bot = %v, want %v: %s", got, tc.wantMentionsBot, f.raw)
			}
		})
	}

	for _, bad := range []struct{ name, body string }{
		{"no content", `{"guild_id":"` + g0.ID.String() + `"}`},
		{"unknown guild", `{"guild_id":"1","content":"x"}`},
		{"unknown channel", `{"channel_id":"1","content":"x"}`},
		{"category", `{"channel_id":"` + g0.Channels[0].ID.String() + `","content":"x"}`},
		{"bad id", `{"guild_id":"abc","content":"x"}`},
		{"not json", `{`},
	} {
		if status, _, b := httpDo(t, "POST", srv.URL()+"/_fake/message", "", bad.body); status != http.StatusBadRequest {
			t.Errorf("%s: %d %s, want 400", bad.name, status, b)
		}
	}
	if status, _, _ := httpDo(t, "GET", srv.URL()+"/_fake/message", "", ""); status != http.StatusMethodNotAllowed {
		t.Errorf("GET: %d, want 405", status)
	}
}

func mustFirstText(t *testing.T, w *World, guild snowflake.ID) snowflake.ID {
	t.Helper()
	ch, ok := w.FirstTextChannel(guild)
	if !ok {
		t.Fatalf("guild %s has no text channel", guild)
	}
	return ch.ID
}
