package discordtest

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/disgoorg/disgo/gateway"
	"github.com/disgoorg/snowflake/v2"
	"github.com/megane-go/megane/internal/testwait"
)

// gatedMessage is what a test reads back from a delivered MESSAGE_CREATE.
type gatedMessage struct {
	Content     string            `json:"content"`
	Embeds      []json.RawMessage `json:"embeds"`
	Attachments []json.RawMessage `json:"attachments"`
	Components  []json.RawMessage `json:"components"`
	Poll        json.RawMessage   `json:"poll"`
}

func (m gatedMessage) blank() bool {
	return m.Content == "" && len(m.Embeds) == 0 && len(m.Attachments) == 0 && len(m.Components) == 0 && m.Poll == nil
}

// richMessage is a guild message with every field the MESSAGE_CONTENT intent
// covers filled in.
func richMessage(srv *Server, id, channelID, guildID, authorID snowflake.ID, content string) map[string]any {
	m := messagePayload(id, channelID, guildID, authorID, content)
	m["embeds"] = []any{map[string]any{"title": "embed", "type": "rich"}}
	m["attachments"] = []any{map[string]any{"id": srv.NewID(), "filename": "a.txt", "size": 1, "url": "https://x/a.txt", "proxy_url": "https://x/a.txt"}}
	m["components"] = []any{map[string]any{"type": 1, "components": []any{map[string]any{"type": 2, "style": 1, "label": "b", "custom_id": "b"}}}}
	m["poll"] = map[string]any{
		"question": map[string]any{"text": "q"}, "answers": []any{map[string]any{"answer_id": 1, "poll_media": map[string]any{"text": "a"}}},
		"expiry": nil, "allow_multiselect": false, "layout_type": 1,
	}
	return m
}

func readMessage(t *testing.T, c *wsClient, wantType string) gatedMessage {
	t.Helper()
	f := c.read()
	if f.typ() != wantType {
		t.Fatalf("want %s, got %s", wantType, f.raw)
	}
	var m gatedMessage
	if err := json.Unmarshal(f.D, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// TestIntentGating: by default the fake gates what a session receives by the
// intents it identified with, as Discord does.
func TestIntentGating(t *testing.T) {
	noContent := gateway.IntentGuilds | gateway.IntentGuildMessages | gateway.IntentDirectMessages
	cases := []struct {
		name    string
		opts    Options
		intents gateway.Intents
		// mutate changes the guild message before it is dispatched.
		mutate    func(srv *Server, m map[string]any)
		eventType string
		wantBlank bool
	}{
		{"guild message without MESSAGE_CONTENT", Options{}, noContent, nil, "MESSAGE_CREATE", true},
		{"guild message edit without MESSAGE_CONTENT", Options{}, noContent, nil, "MESSAGE_UPDATE", true},
		{"guild message with MESSAGE_CONTENT", Options{}, noContent | gateway.IntentMessageContent, nil, "MESSAGE_CREATE", false},
		{"message that mentions the bot", Options{}, noContent, func(srv *Server, m map[string]any) {
			m["mentions"] = []any{map[string]any{"id": srv.AppID(), "username": "fakebot", "discriminator": "0", "bot": true}}
		}, "MESSAGE_CREATE", false},
		{"the bot's own message", Options{}, noContent, func(srv *Server, m map[string]any) {
			m["author"] = map[string]any{"id": srv.AppID(), "username": "fakebot", "discriminator": "0", "bot": true}
		}, "MESSAGE_CREATE", false},
		{"IgnoreIntents", Options{IgnoreIntents: true}, noContent, nil, "MESSAGE_CREATE", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.opts.World = WorldOptions{Guilds: 1}
			srv := newTestServer(t, tc.opts)
			world := srv.World()
			g := world.Guilds[0]
			ch, _ := world.FirstTextChannel(g.ID)
			c := dial(t, srv, "", "")
			c.hello()
			c.identifyIntents(tc.intents, srv.Token(), 0, 1, 1)
			m := richMessage(srv, srv.NewID(), ch.ID, g.ID, world.Users[0].ID, "secret")
			if tc.mutate != nil {
				tc.mutate(srv, m)
			}
			if _, err := srv.Dispatch(g.ID, tc.eventType, m); err != nil {
				t.Fatal(err)
			}
			got := readMessage(t, c, tc.eventType)
			if got.blank() != tc.wantBlank {
				t.Fatalf("blank = %v, want %v: %+v", got.blank(), tc.wantBlank, got)
			}
			if !tc.wantBlank && (got.Content != "secret" || len(got.Embeds) != 1 || len(got.Attachments) != 1 || len(got.Components) != 1 || got.Poll == nil) {
				t.Fatalf("content not kept: %+v", got)
			}
			if want := map[bool]int64{true: 1, false: 0}[tc.wantBlank]; srv.Stats().ContentBlanked != want {
				t.Fatalf("content_blanked = %d, want %d", srv.Stats().ContentBlanked, want)
			}
		})
	}
}

// A DM keeps its content without MESSAGE_CONTENT, and needs DIRECT_MESSAGES.
func TestIntentGatingDirectMessages(t *testing.T) {
	srv := newTestServer(t, Options{World: WorldOptions{Guilds: 1}})
	c := dial(t, srv, "", "")
	c.hello()
	c.identifyIntents(gateway.IntentGuilds|gateway.IntentDirectMessages, srv.Token(), 0, 1, 1)
	user := srv.World().Users[0].ID
	dm := map[string]any{
		"id": srv.NewID(), "channel_id": srv.NewID(), "author": map[string]any{"id": user, "username": "u", "discriminator": "0"},
		"content": "psst", "timestamp": time.Now().UTC().Format(time.RFC3339Nano), "mentions": []any{}, "attachments": []any{},
		"embeds": []any{}, "components": []any{}, "type": 0,
	}
	if _, err := srv.DispatchToShard(0, "MESSAGE_CREATE", dm); err != nil {
		t.Fatal(err)
	}
	if got := readMessage(t, c, "MESSAGE_CREATE"); got.Content != "psst" {
		t.Fatalf("DM content %q, want psst", got.Content)
	}

	c2 := dial(t, srv, "", "")
	c2.hello()
	c2.identifyIntents(gateway.IntentGuilds, srv.Token(), 0, 1, 1) // supersedes the first session
	if _, err := srv.DispatchToShard(0, "MESSAGE_CREATE", dm); !errors.Is(err, ErrWithheld) {
		t.Fatalf("DM without DIRECT_MESSAGES: %v, want ErrWithheld", err)
	}
}

// Events of intents the session did not ask for are withheld; GUILD_CREATE
// lists only the bot without GUILD_PRESENCES; a whole-member-list request
// without GUILD_MEMBERS goes unanswered.
func TestIntentGatingEvents(t *testing.T) {
	srv := newTestServer(t, Options{World: WorldOptions{Guilds: 1, MembersPerGuild: 4}})
	g := srv.World().Guilds[0]
	c := dial(t, srv, "", "")
	c.hello()
	c.send(opIdentify, identifyPayloadIntents(srv.Token(), 0, 1, gateway.IntentGuilds|gateway.IntentGuildMessages))
	if f := c.read(); f.typ() != "READY" {
		t.Fatalf("want READY, got %s", f.raw)
	}
	f := c.read()
	var gc struct {
		Members []struct {
			User struct {
				ID snowflake.ID `json:"id"`
			} `json:"user"`
		} `json:"members"`
		MemberCount int `json:"member_count"`
	}
	if err := json.Unmarshal(f.D, &gc); err != nil || f.typ() != "GUILD_CREATE" {
		t.Fatalf("want GUILD_CREATE, got %s (%v)", f.raw, err)
	}
	if len(gc.Members) != 1 || gc.Members[0].User.ID != srv.AppID() || gc.MemberCount != len(g.Members) {
		t.Fatalf("GUILD_CREATE without GUILD_PRESENCES: members %+v member_count %d, want only the bot and %d", gc.Members, gc.MemberCount, len(g.Members))
	}

	member := map[string]any{"guild_id": g.ID, "user": map[string]any{"id": "5", "username": "x"}, "roles": []any{}, "joined_at": "2026-01-01T00:00:00Z"}
	presence := map[string]any{"guild_id": g.ID, "user": map[string]any{"id": "5"}, "status": "online", "activities": []any{}, "client_status": map[string]any{}}
	for _, ev := range []struct {
		t string
		d any
	}{{"GUILD_MEMBER_ADD", member}, {"GUILD_MEMBER_UPDATE", member}, {"PRESENCE_UPDATE", presence}, {"TYPING_START", map[string]any{"guild_id": g.ID, "channel_id": g.Channels[1].ID, "user_id": "5", "timestamp": 1}}} {
		if _, err := srv.Dispatch(g.ID, ev.t, ev.d); !errors.Is(err, ErrWithheld) {
			t.Fatalf("%s: %v, want ErrWithheld", ev.t, err)
		}
	}
	if st := srv.Stats(); st.Withheld != 4 {
		t.Fatalf("withheld = %d, want 4", st.Withheld)
	}

	c.send(opRequestGuildMembers, map[string]any{"guild_id": g.ID, "query": "", "limit": 0})
	testwait.For(t, 5*time.Second, "the refused member request", func() bool { return srv.Stats().MemberRequestsRefused == 1 })
	// A request by user id needs no intent: its chunk is the next frame, so the
	// refused request sent nothing.
	c.send(opRequestGuildMembers, map[string]any{"guild_id": g.ID, "user_ids": []snowflake.ID{g.Members[0].UserID}})
	if f := c.read(); f.typ() != "GUILD_MEMBERS_CHUNK" || !contains(string(f.D), g.Members[0].UserID.String()) {
		t.Fatalf("want the chunk of the user id request, got %s", f.raw)
	}
}

// Events buffered for a detached session are gated when dispatched, so a
// RESUME replays them as gated.
func TestIntentGatingReplay(t *testing.T) {
	srv := newTestServer(t, Options{World: WorldOptions{Guilds: 1}})
	world := srv.World()
	g := world.Guilds[0]
	ch, _ := world.FirstTextChannel(g.ID)
	c := dial(t, srv, "", "")
	c.hello()
	rs := c.identifyIntents(gateway.IntentGuilds|gateway.IntentGuildMessages, srv.Token(), 0, 1, 1)
	if err := srv.DropShard(0); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 5*time.Second, "detach", func() bool {
		st, _ := srv.ShardStatus(0)
		return !st.Connected && st.Resumable
	})
	if _, err := srv.Dispatch(g.ID, "MESSAGE_CREATE", richMessage(srv, srv.NewID(), ch.ID, g.ID, world.Users[0].ID, "while away")); err != nil {
		t.Fatal(err)
	}
	if _, err := srv.Dispatch(g.ID, "GUILD_MEMBER_ADD", map[string]any{"guild_id": g.ID, "user": map[string]any{"id": "5", "username": "x"}, "roles": []any{}, "joined_at": "2026-01-01T00:00:00Z"}); !errors.Is(err, ErrWithheld) {
		t.Fatalf("GUILD_MEMBER_ADD: %v, want ErrWithheld", err)
	}
	c2 := dial(t, srv, "/resume", "")
	c2.hello()
	c2.send(opResume, map[string]any{"token": srv.Token(), "session_id": rs.ID, "seq": rs.Seq})
	if got := readMessage(t, c2, "MESSAGE_CREATE"); !got.blank() {
		t.Fatalf("replayed message not blanked: %+v", got)
	}
	if f := c2.read(); f.typ() != "RESUMED" {
		t.Fatalf("want RESUMED (the withheld member event is not replayed), got %s", f.raw)
	}
}
