package notify

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/megane-go/megane/discordtest"
	"github.com/megane-go/megane/lifecycle"
)

func TestEventsReachTheChannelCoalesced(t *testing.T) {
	srv, err := discordtest.NewServer(discordtest.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	ch := srv.World().Guilds[0].Channels[0].ID
	hook, err := srv.CreateWebhook(ch)
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWebhook(Options{URL: srv.URL() + "/api/v10/webhooks/" + hook.ID.String() + "/" + hook.Token, Interval: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	w.Notify(lifecycle.Event{Type: lifecycle.ClusterExited, Cluster: 2, Shard: -1, At: now, Detail: "signal: killed"})
	w.Notify(lifecycle.Event{Type: lifecycle.ShardReady, Cluster: 2, Shard: 5, At: now}) // not a default type
	w.Notify(lifecycle.Event{Type: lifecycle.ClusterRestarted, Cluster: 2, Shard: -1, At: now})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	msgs := srv.Messages()
	if len(msgs) != 1 {
		t.Fatalf("%d messages posted, want 1 (coalesced): %+v", len(msgs), msgs)
	}
	got := msgs[0].Content
	want := "⚠️ `03:04:05` **cluster_exited** cluster 2: signal: killed\n🔄 `03:04:05` **cluster_restarted** cluster 2"
	if got != want {
		t.Errorf("content =\n%s\nwant\n%s", got, want)
	}
	if msgs[0].WebhookID != hook.ID || msgs[0].ChannelID != ch {
		t.Errorf("posted by webhook %v in channel %v", msgs[0].WebhookID, msgs[0].ChannelID)
	}
	if !strings.Contains(string(msgs[0].Raw), `"allowed_mentions":{"parse":[]}`) {
		t.Errorf("status messages must not ping: %s", msgs[0].Raw)
	}
}

func TestRateLimitIsWaitedOut(t *testing.T) {
	var calls atomic.Int32
	ts := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			rw.Header().Set("Retry-After", "0.05")
			rw.WriteHeader(http.StatusTooManyRequests)
			return
		}
		rw.WriteHeader(http.StatusNoContent)
	}))
	defer ts.Close()
	w, err := NewWebhook(Options{URL: ts.URL, Interval: time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	w.Notify(lifecycle.ClusterEvent(lifecycle.ClusterGaveUp, 1, "5 crashes in 10m"))
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := calls.Load(); n != 2 {
		t.Errorf("%d requests, want 2 (one 429, one retry)", n)
	}
}

func TestOverflowIsCountedAndLongBurstsSplit(t *testing.T) {
	lines := make([]string, 50)
	for i := range lines {
		lines[i] = strings.Repeat("x", 100)
	}
	msgs := pack(lines, maxContent)
	if len(msgs) != 3 {
		t.Fatalf("%d messages, want 3", len(msgs))
	}
	for _, m := range msgs {
		if len(m) > maxContent {
			t.Errorf("message of %d bytes exceeds %d", len(m), maxContent)
		}
	}

	var bodies []string
	ts := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) {
		b := make([]byte, 4096)
		n, _ := r.Body.Read(b)
		bodies = append(bodies, string(b[:n]))
		rw.WriteHeader(http.StatusNoContent)
	}))
	defer ts.Close()
	w, err := NewWebhook(Options{URL: ts.URL, MaxQueue: 2, Interval: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	for range 5 {
		w.Notify(lifecycle.ClusterEvent(lifecycle.ClusterExited, 0, ""))
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(bodies) != 1 || !strings.Contains(bodies[0], "and 3 more events") {
		t.Errorf("bodies = %q", bodies)
	}
}

func TestBadURL(t *testing.T) {
	for _, u := range []string{"", "discord.com/api/webhooks/1/x", "ftp://x/y"} {
		if _, err := NewWebhook(Options{URL: u}); !errors.Is(err, ErrBadURL) {
			t.Errorf("NewWebhook(%q) error = %v, want ErrBadURL", u, err)
		}
	}
}
