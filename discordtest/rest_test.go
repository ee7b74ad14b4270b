package discordtest

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/disgoorg/disgo/discord"
	"github.com/disgoorg/disgo/rest"
	"github.com/disgoorg/snowflake/v2"
)

// restClient is disgo's own REST client pointed at the fake: decoding with it proves
// that the responses have the types disgo expects, and it exercises disgo's
// rate-limit header handling.
func restClient(srv *Server) rest.Rest {
	return rest.New(rest.NewClient(srv.Token(), rest.WithURL(srv.RESTURL())))
}

func httpDo(t *testing.T, method, url, auth, body string) (int, http.Header, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	rs, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer rs.Body.Close()
	b, _ := io.ReadAll(rs.Body)
	return rs.StatusCode, rs.Header, b
}

func TestRESTGatewayBot(t *testing.T) {
	srv := newTestServer(t, Options{Shards: 4, MaxConcurrency: 2, SessionStartTotal: 50, World: WorldOptions{Guilds: 3}})
	gb, err := restClient(srv).GetGatewayBot()
	if err != nil {
		t.Fatal(err)
	}
	if gb.URL != srv.GatewayURL() || gb.Shards != 4 || gb.SessionStartLimit.MaxConcurrency != 2 ||
		gb.SessionStartLimit.Total != 50 || gb.SessionStartLimit.Remaining != 50 || gb.SessionStartLimit.ResetAfter <= 0 {
		t.Fatalf("gateway/bot = %+v", gb)
	}
	if strings.Contains(gb.URL, "?") {
		t.Fatalf("gateway url %q must not contain '?'", gb.URL)
	}
	// Remaining decreases with every identify, and runtime config shows up.
	for shard := 0; shard < 2; shard++ {
		c := dial(t, srv, "", "")
		c.hello()
		c.identify(srv.Token(), shard, 2, len(srv.World().GuildsOfShard(shard, 2)))
	}
	srv.SetMaxConcurrency(16)
	gb, err = restClient(srv).GetGatewayBot()
	if err != nil {
		t.Fatal(err)
	}
	if gb.SessionStartLimit.Remaining != 48 || gb.SessionStartLimit.MaxConcurrency != 16 {
		t.Fatalf("after two identifies: %+v", gb.SessionStartLimit)
	}
	g, err := restClient(srv).GetGateway()
	if err != nil || g.URL != srv.GatewayURL() {
		t.Fatalf("gateway = %+v, %v", g, err)
	}
}

func TestRESTAuthAndNotFound(t *testing.T) {
	srv := newTestServer(t, Options{World: WorldOptions{Guilds: 1}})
	gid := srv.World().Guilds[0].ID.String()
	cases := []struct {
		name, method, path, auth string
		status, code             int
		message                  string
	}{
		{"no auth", "GET", "/api/v10/gateway/bot", "", 401, 0, "401: Unauthorized"},
		{"wrong token", "GET", "/api/v10/users/@me", "Bot " + TokenFor(42), 401, 0, "401: Unauthorized"},
		{"bearer instead of bot", "GET", "/api/v10/users/@me", "Bearer " + srv.Token(), 401, 0, "401: Unauthorized"},
		{"other api version", "GET", "/api/v9/gateway/bot", "Bot " + srv.Token(), 404, 0, "404: Not Found"},
		{"unknown route", "GET", "/api/v10/nope", "Bot " + srv.Token(), 404, 0, "404: Not Found"},
		{"unknown guild", "GET", "/api/v10/guilds/123", "Bot " + srv.Token(), 404, 10004, "Unknown Guild"},
		{"unknown channel", "GET", "/api/v10/channels/123", "Bot " + srv.Token(), 404, 10003, "Unknown Channel"},
		{"unknown user", "GET", "/api/v10/users/123", "Bot " + srv.Token(), 404, 10013, "Unknown User"},
		{"unknown member user", "GET", "/api/v10/guilds/" + gid + "/members/123", "Bot " + srv.Token(), 404, 10013, "Unknown User"},
		{"post to unknown channel", "POST", "/api/v10/channels/123/messages", "Bot " + srv.Token(), 404, 10003, "Unknown Channel"},
		{"wrong method", "DELETE", "/api/v10/gateway/bot", "Bot " + srv.Token(), 405, 0, "405: Method Not Allowed"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			body := ""
			if tc.method == "POST" {
				body = `{"content":"x"}`
			}
			status, _, b := httpDo(t, tc.method, srv.URL()+tc.path, tc.auth, body)
			var e wireError
			if err := json.Unmarshal(b, &e); err != nil {
				t.Fatalf("body %s: %v", b, err)
			}
			if status != tc.status || e.Code != tc.code || e.Message != tc.message {
				t.Fatalf("got %d %+v, want %d {%s %d}", status, e, tc.status, tc.message, tc.code)
			}
		})
	}
	// disgo surfaces the JSON error code.
	_, err := restClient(srv).GetGuild(123, false)
	var rerr *rest.Error
	if !errors.As(err, &rerr) || rerr.Code != 10004 {
		t.Fatalf("disgo error %v", err)
	}
}

func TestRESTEntities(t *testing.T) {
	srv := newTestServer(t, Options{World: WorldOptions{Seed: 9, Guilds: 2, ChannelsPerGuild: 6, RolesPerGuild: 3, MembersPerGuild: 4}})
	rc := restClient(srv)
	world := srv.World()
	g := world.Guilds[1]

	self, err := rc.GetUser(srv.AppID())
	if err != nil || self.ID != srv.AppID() || !self.Bot {
		t.Fatalf("bot user %+v %v", self, err)
	}
	var me discord.OAuth2User
	status, _, b := httpDo(t, "GET", srv.RESTURL()+"/users/@me", "Bot "+srv.Token(), "")
	if err := json.Unmarshal(b, &me); status != 200 || err != nil || me.ID != srv.AppID() {
		t.Fatalf("users/@me %d %s %v", status, b, err)
	}
	for _, get := range []func(...rest.RequestOpt) (*discord.Application, error){rc.GetCurrentApplication, rc.GetBotApplicationInfo} {
		app, err := get()
		if err != nil || app.ID != srv.AppID() || app.Bot == nil || app.Bot.ID != srv.AppID() {
			t.Fatalf("application %+v %v", app, err)
		}
	}

	rg, err := rc.GetGuild(g.ID, true)
	if err != nil || rg.ID != g.ID || rg.Name != g.Name || rg.OwnerID != g.OwnerID || len(rg.Roles) != 3 {
		t.Fatalf("guild %+v %v", rg, err)
	}
	if rg.ApproximateMemberCount != len(g.Members) {
		t.Fatalf("approximate member count %v", rg.ApproximateMemberCount)
	}
	chans, err := rc.GetGuildChannels(g.ID)
	if err != nil || len(chans) != 6 {
		t.Fatalf("channels %d %v", len(chans), err)
	}
	for i, ch := range chans {
		if ch.ID() != g.Channels[i].ID || ch.GuildID() != g.ID || ch.Name() != g.Channels[i].Name {
			t.Fatalf("channel %d: %v %v %q", i, ch.ID(), ch.GuildID(), ch.Name())
		}
	}
	ch, err := rc.GetChannel(g.Channels[1].ID)
	if err != nil || ch.ID() != g.Channels[1].ID {
		t.Fatalf("channel %v %v", ch, err)
	}
	roles, err := rc.GetRoles(g.ID)
	if err != nil || len(roles) != 3 || roles[0].Permissions == 0 {
		t.Fatalf("roles %+v %v", roles, err)
	}
	m := g.Members[0]
	mem, err := rc.GetMember(g.ID, m.UserID)
	if err != nil || mem.User.ID != m.UserID || len(mem.RoleIDs) != len(m.Roles) {
		t.Fatalf("member %+v %v", mem, err)
	}
	all, err := rc.GetMembers(g.ID, 1000, 0)
	if err != nil || len(all) != len(g.Members) {
		t.Fatalf("members %d %v", len(all), err)
	}
	u, err := rc.GetUser(m.UserID)
	if want, _ := world.User(m.UserID); err != nil || u.Username != want.Username {
		t.Fatalf("user %+v %v", u, err)
	}
	// A user of the pool who is not in the guild is an unknown member.
	var outsider snowflake.ID
	for _, pu := range world.Users {
		if _, ok := world.Member(g.ID, pu.ID); !ok {
			outsider = pu.ID
			break
		}
	}
	_, err = rc.GetMember(g.ID, outsider)
	var rerr *rest.Error
	if !errors.As(err, &rerr) || rerr.Code != 10007 {
		t.Fatalf("outsider: %v", err)
	}
}

func TestRESTMessagesAreRecorded(t *testing.T) {
	srv := newTestServer(t, Options{World: WorldOptions{Guilds: 1}})
	rc := restClient(srv)
	world := srv.World()
	g := world.Guilds[0]
	text, _ := world.FirstTextChannel(g.ID)

	msg, err := rc.CreateMessage(text.ID, discord.MessageCreate{
		Content: "hello", Embeds: []discord.Embed{{Title: "t", Description: "d"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if msg.ID == 0 || msg.ChannelID != text.ID || msg.Content != "hello" || msg.Author.ID != srv.AppID() || len(msg.Embeds) != 1 {
		t.Fatalf("message %+v", msg)
	}
	if time.Since(msg.CreatedAt) > time.Minute {
		t.Fatalf("message timestamp %v", msg.CreatedAt)
	}
	if _, err := rc.CreateMessage(text.ID, discord.MessageCreate{}); err == nil {
		t.Fatal("empty message accepted")
	}
	if _, err := rc.CreateMessage(g.Channels[0].ID, discord.MessageCreate{Content: "x"}); err == nil {
		t.Fatal("message to a category accepted")
	}

	wh, err := srv.CreateWebhook(text.ID)
	if err != nil {
		t.Fatal(err)
	}
	wm, err := rc.CreateWebhookMessage(wh.ID, wh.Token, discord.WebhookMessageCreate{Content: "from webhook"}, rest.CreateWebhookMessageParams{Wait: true})
	if err != nil || wm.WebhookID == nil || *wm.WebhookID != wh.ID || wm.ChannelID != text.ID {
		t.Fatalf("webhook message %+v %v", wm, err)
	}
	if _, err := rc.CreateWebhookMessage(wh.ID, "wrong", discord.WebhookMessageCreate{Content: "x"}, rest.CreateWebhookMessageParams{}); err == nil {
		t.Fatal("wrong webhook token accepted")
	}
	// An unregistered webhook is accepted without wait (204).
	status, _, _ := httpDo(t, "POST", srv.RESTURL()+"/webhooks/123/tok", "", `{"content":"status update"}`)
	if status != http.StatusNoContent {
		t.Fatalf("unregistered webhook: %d", status)
	}

	msgs := srv.Messages()
	if len(msgs) != 3 {
		t.Fatalf("%d messages recorded: %+v", len(msgs), msgs)
	}
	if msgs[0].Content != "hello" || msgs[0].ChannelID != text.ID || msgs[0].GuildID != g.ID || !strings.Contains(string(msgs[0].Embeds), `"title":"t"`) {
		t.Fatalf("first message %+v", msgs[0])
	}
	if msgs[1].WebhookID != wh.ID || msgs[1].ChannelID != text.ID || msgs[2].WebhookID != 123 || msgs[2].Content != "status update" {
		t.Fatalf("webhook messages %+v", msgs[1:])
	}
	var raw map[string]any
	if err := json.Unmarshal(msgs[0].Raw, &raw); err != nil || raw["content"] != "hello" {
		t.Fatalf("raw %s", msgs[0].Raw)
	}
	st := srv.Stats()
	if st.REST["POST /channels/{id}/messages"][200] != 1 || st.REST["POST /channels/{id}/messages"][400] != 2 {
		t.Fatalf("rest counts %v", st.REST)
	}
}

func TestRESTInjectedRateLimit(t *testing.T) {
	srv := newTestServer(t, Options{World: WorldOptions{Guilds: 1}})
	srv.InjectRateLimit(1, 1500*time.Millisecond)
	status, h, b := httpDo(t, "GET", srv.RESTURL()+"/users/@me", "Bot "+srv.Token(), "")
	if status != http.StatusTooManyRequests || h.Get("Retry-After") != "2" || h.Get("Via") == "" || h.Get("X-RateLimit-Reset-After") == "" {
		t.Fatalf("429: %d %v %s", status, h, b)
	}
	status, h, _ = httpDo(t, "GET", srv.RESTURL()+"/users/@me", "Bot "+srv.Token(), "")
	if status != 200 || h.Get("X-RateLimit-Bucket") == "" || h.Get("X-RateLimit-Reset-After") == "" {
		t.Fatalf("after the 429: %d %v", status, h)
	}
}

// A reply (message_reference) is recorded with the id it answers and comes back
// as Discord returns it: type 19 with the reference.
func TestRESTReplyIsRecorded(t *testing.T) {
	srv := newTestServer(t, Options{World: WorldOptions{Guilds: 1}})
	world := srv.World()
	text, _ := world.FirstTextChannel(world.Guilds[0].ID)
	ping := srv.NewID()
	msg, err := restClient(srv).CreateMessage(text.ID, discord.MessageCreate{
		Content: "pong", MessageReference: &discord.MessageReference{MessageID: &ping},
	})
	if err != nil {
		t.Fatal(err)
	}
	if msg.Type != discord.MessageTypeReply || msg.MessageReference == nil || msg.MessageReference.MessageID == nil || *msg.MessageReference.MessageID != ping {
		t.Fatalf("reply %+v", msg)
	}
	if msgs := srv.Messages(); len(msgs) != 1 || msgs[0].ReplyTo != ping {
		t.Fatalf("recorded %+v, want a reply to %v", msgs, ping)
	}
}
