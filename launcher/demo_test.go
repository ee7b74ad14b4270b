package launcher

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/disgoorg/disgo/gateway"
	"github.com/disgoorg/snowflake/v2"
	"github.com/gorilla/websocket"

	"github.com/megane-go/megane/discordtest"
)

// rawBot is a minimal gateway client standing in for a bot (no disgo, whose
// gateway races would fail the race detector): it identifies with the given
// intents and hands every MESSAGE_CREATE to onMessage.
type rawBot struct {
	t   *testing.T
	srv *discordtest.Server
	ws  *websocket.Conn
}

type rawMessage struct {
	ID        snowflake.ID `json:"id"`
	ChannelID snowflake.ID `json:"channel_id"`
	Content   string       `json:"content"`
	Author    struct {
		Bot bool `json:"bot"`
	} `json:"author"`
}

func startRawBot(t *testing.T, srv *discordtest.Server, intents gateway.Intents, onMessage func(b *rawBot, m rawMessage)) *rawBot {
	t.Helper()
	ws, _, err := websocket.DefaultDialer.Dial(srv.GatewayURL()+"?v=10&encoding=json", nil)
	if err != nil {
		t.Fatal(err)
	}
	b := &rawBot{t: t, srv: srv, ws: ws}
	identify := map[string]any{"op": 2, "d": map[string]any{
		"token": srv.Token(), "intents": int(intents), "shard": []int{0, 1},
		"properties": map[string]string{"os": "linux", "browser": "test", "device": "test"},
	}}
	if err := ws.WriteJSON(identify); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			var f struct {
				T string          `json:"t"`
				D json.RawMessage `json:"d"`
			}
			if err := ws.ReadJSON(&f); err != nil {
				return
			}
			if f.T != "MESSAGE_CREATE" {
				continue
			}
			var m rawMessage
			if json.Unmarshal(f.D, &m) == nil && !m.Author.Bot {
				onMessage(b, m)
			}
		}
	}()
	t.Cleanup(func() { _ = ws.Close(); wg.Wait() })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.WaitFor(ctx, func(s *discordtest.Server) bool { return s.ShardsReady(1) }); err != nil {
		t.Fatalf("raw bot not ready: %v", err)
	}
	return b
}

// post sends a message over REST as the bot, as a reply to replyTo when it is
// not zero.
func (b *rawBot) post(channel, replyTo snowflake.ID, content string) {
	body := map[string]any{"content": content}
	if replyTo != 0 {
		body["message_reference"] = map[string]any{"message_id": replyTo.String()}
	}
	raw, _ := json.Marshal(body)
	req, _ := http.NewRequest("POST", fmt.Sprintf("%s/channels/%s/messages", b.srv.RESTURL(), channel), bytes.NewReader(raw))
	req.Header.Set("Authorization", "Bot "+b.srv.Token())
	req.Header.Set("Content-Type", "application/json")
	rs, err := http.DefaultClient.Do(req)
	if err != nil {
		b.t.Errorf("post: %v", err)
		return
	}
	_ = rs.Body.Close()
	if rs.StatusCode != http.StatusOK {
		b.t.Errorf("post: status %d", rs.StatusCode)
	}
}

// syncBuffer is a log destination the test reads while the pinger writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func newDemoFake(t *testing.T, guilds int) *discordtest.Server {
	t.Helper()
	srv, err := discordtest.NewServer(discordtest.Options{World: discordtest.WorldOptions{Guilds: guilds, Seed: 1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

// TestDemoWarnsWithoutMessageContent: a bot that answers "!ping" but asked
// for no MESSAGE_CONTENT never sees the text (the fake blanks it, as Discord
// does), and the demo says which intent is missing; with the intent it
// answers and the demo does not warn.
func TestDemoWarnsWithoutMessageContent(t *testing.T) {
	for _, tc := range []struct {
		name     string
		intents  gateway.Intents
		wantWarn bool
	}{
		{"without", gateway.IntentGuilds | gateway.IntentGuildMessages, true},
		{"with", gateway.IntentGuilds | gateway.IntentGuildMessages | gateway.IntentMessageContent, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv := newDemoFake(t, 2)
			startRawBot(t, srv, tc.intents, func(b *rawBot, m rawMessage) {
				if m.Content == "!ping" {
					b.post(m.ChannelID, m.ID, "pong")
				}
			})
			var logs syncBuffer
			wait := 300 * time.Millisecond
			if !tc.wantWarn {
				wait = 10 * time.Second // an answer ends the wait
			}
			p := &pinger{fake: srv, log: slog.New(slog.NewTextHandler(&logs, nil)), wait: wait, intents: tc.intents}
			for i := 0; i < demoUnansweredWarn; i++ {
				p.ping(context.Background())
			}
			out := logs.String()
			if warned := strings.Contains(out, "no MESSAGE_CONTENT intent"); warned != tc.wantWarn {
				t.Fatalf("warned = %v, want %v; log:\n%s", warned, tc.wantWarn, out)
			}
			if answered := strings.Count(out, `answer=pong`); tc.wantWarn == (answered > 0) || (!tc.wantWarn && answered != demoUnansweredWarn) {
				t.Fatalf("%d pings answered; log:\n%s", answered, out)
			}
		})
	}
}

// TestDemoPairsAnswerWithItsPing: an answer to an older ping (as a bot
// replays after a restart) that arrives while a new ping waits is not taken
// for the new ping's answer, whether it is a reply or a plain message in the
// old ping's channel.
func TestDemoPairsAnswerWithItsPing(t *testing.T) {
	srv := newDemoFake(t, 2)
	w := srv.World()
	g0, g1 := w.Guilds[0], w.Guilds[1]
	oldChannel, _ := w.FirstTextChannel(g0.ID)
	oldPing := srv.NewID()
	startRawBot(t, srv, gateway.IntentGuilds|gateway.IntentGuildMessages|gateway.IntentMessageContent, func(b *rawBot, m rawMessage) {
		if m.Content != "!ping" {
			return
		}
		if m.ChannelID != oldChannel.ID {
			// Replayed answers to an old ping in another guild come first.
			b.post(oldChannel.ID, oldPing, "replayed reply")
			b.post(oldChannel.ID, 0, "replayed plain")
		}
		b.post(m.ChannelID, m.ID, "pong for "+m.ID.String())
	})
	var logs syncBuffer
	p := &pinger{fake: srv, log: slog.New(slog.NewJSONHandler(&logs, nil)), wait: 10 * time.Second,
		intents: gateway.IntentMessageContent, sent: 1} // sent 1: the first ping goes to g1
	p.ping(context.Background())
	var rec struct {
		Msg, Guild, Answer string
	}
	if err := json.Unmarshal([]byte(logs.String()), &rec); err != nil || rec.Msg != "demo: a user said !ping" {
		t.Fatalf("log %s: %v", logs.String(), err)
	}
	msgs := srv.Messages()
	var want string
	for _, m := range msgs {
		if strings.HasPrefix(m.Content, "pong for ") {
			want = m.Content
		}
	}
	if want == "" || rec.Guild != g1.Name || rec.Answer != want {
		t.Fatalf("logged guild %q answer %q, want %q and %q; messages %+v", rec.Guild, rec.Answer, g1.Name, want, msgs)
	}
}
