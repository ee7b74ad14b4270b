// Package notify posts the bot's lifecycle events into a Discord text
// channel through a webhook, so operators see restarts, crash loops and
// recoveries where they already are.
//
// Events are coalesced: everything that happens within Options.Interval goes
// out as one message, which keeps a mass restart within the webhook's rate
// limit. A 429 is waited out and retried; a Discord outage never blocks the
// caller (Notify only queues).
//
//	w, err := notify.NewWebhook(notify.Options{URL: os.Getenv("STATUS_WEBHOOK")})
//	cfg.OnEvent = w.Notify
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/megane-go/megane/lifecycle"
)

// ErrBadURL is returned by NewWebhook for a URL that is not an http(s) URL.
var ErrBadURL = errors.New("notify: bad webhook URL")

// DefaultTypes are the events posted when Options.Types is empty: what a
// human should hear about, not every shard's heartbeat of life.
var DefaultTypes = []lifecycle.Type{
	lifecycle.AllClustersReady, lifecycle.ClusterExited, lifecycle.ClusterRestarted,
	lifecycle.ClusterGaveUp, lifecycle.ClusterUnresponsive, lifecycle.ServiceExited,
	lifecycle.ClusterLeaseLost, lifecycle.ClusterUnowned, lifecycle.ReshardStep,
}

// maxContent is Discord's limit on a message's content.
const maxContent = 2000

// Options configures a Webhook.
type Options struct {
	// URL is the webhook's execute URL,
	// https://discord.com/api/webhooks/<id>/<token>. Required.
	URL string
	// Types are the event types posted. Default DefaultTypes.
	Types []lifecycle.Type
	// Interval coalesces events into one message. Default 2 s.
	Interval time.Duration
	// Username overrides the webhook's name. Default "Megane".
	Username string
	// MaxQueue bounds queued lines; beyond it events are counted and
	// reported as "… and N more". Default 1000.
	MaxQueue int
	// Client sends the requests. Default: an http.Client with a 10 s timeout.
	Client *http.Client
	// Logger receives delivery failures. Default: discard.
	Logger *slog.Logger
}

// Webhook posts events. Its methods are safe for concurrent use.
type Webhook struct {
	opts  Options
	types map[lifecycle.Type]bool

	mu      sync.Mutex
	lines   []string
	dropped int
	closed  bool
	wake    chan struct{}
	done    chan struct{}
	stop    chan struct{}
}

// ValidateURL reports whether u can be a webhook URL, without any request.
func ValidateURL(u string) error {
	p, err := url.Parse(u)
	if err != nil || (p.Scheme != "https" && p.Scheme != "http") || p.Host == "" {
		return fmt.Errorf("%w: %q (want https://discord.com/api/webhooks/<id>/<token>)", ErrBadURL, u)
	}
	return nil
}

// NewWebhook validates opts and starts the poster.
func NewWebhook(opts Options) (*Webhook, error) {
	if err := ValidateURL(opts.URL); err != nil {
		return nil, err
	}
	if len(opts.Types) == 0 {
		opts.Types = DefaultTypes
	}
	if opts.Interval <= 0 {
		opts.Interval = 2 * time.Second
	}
	if opts.Username == "" {
		opts.Username = "Megane"
	}
	if opts.MaxQueue <= 0 {
		opts.MaxQueue = 1000
	}
	if opts.Client == nil {
		opts.Client = &http.Client{Timeout: 10 * time.Second}
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	w := &Webhook{opts: opts, types: map[lifecycle.Type]bool{}, wake: make(chan struct{}, 1),
		done: make(chan struct{}), stop: make(chan struct{})}
	for _, t := range opts.Types {
		w.types[t] = true
	}
	go w.loop()
	return w, nil
}

// Notify queues ev if its type is posted. It never blocks, so it can be
// used as launcher.Config.OnEvent directly.
func (w *Webhook) Notify(ev lifecycle.Event) {
	if !w.types[ev.Type] {
		return
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return
	}
	if len(w.lines) >= w.opts.MaxQueue {
		w.dropped++
		return
	}
	w.lines = append(w.lines, Format(ev))
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// Close posts what is queued, waiting at most until ctx ends, and stops.
func (w *Webhook) Close(ctx context.Context) error {
	w.mu.Lock()
	if !w.closed {
		w.closed = true
		close(w.stop)
	}
	w.mu.Unlock()
	select {
	case <-w.done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("notify: close: %w", ctx.Err())
	}
}

// Format renders an event as one line of a status message.
func Format(ev lifecycle.Event) string {
	icon := "ℹ️"
	switch ev.Type {
	case lifecycle.AllClustersReady, lifecycle.ClusterReady, lifecycle.ServiceReady:
		icon = "✅"
	case lifecycle.ClusterRestarted, lifecycle.ShardResumed:
		icon = "🔄"
	case lifecycle.ReshardStep:
		icon = "🔀"
	case lifecycle.ClusterExited, lifecycle.ServiceExited, lifecycle.ShardDisconnected:
		icon = "⚠️"
	case lifecycle.ClusterGaveUp, lifecycle.ClusterUnresponsive, lifecycle.ClusterUnowned, lifecycle.ClusterLeaseLost:
		icon = "🚨"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%s `%s` **%s**", icon, ev.At.UTC().Format("15:04:05"), ev.Type)
	if ev.Cluster >= 0 {
		fmt.Fprintf(&b, " cluster %d", ev.Cluster)
	}
	if ev.Shard >= 0 {
		fmt.Fprintf(&b, " shard %d", ev.Shard)
	}
	if ev.Service != "" {
		fmt.Fprintf(&b, " service %s", ev.Service)
	}
	if ev.Detail != "" {
		d := ev.Detail
		if len(d) > 300 {
			d = d[:300] + "…"
		}
		b.WriteString(": " + d)
	}
	return b.String()
}

func (w *Webhook) loop() {
	defer close(w.done)
	for {
		select {
		case <-w.wake:
		case <-w.stop:
			w.flush(context.Background())
			return
		}
		// Let the burst gather, then post it as one message.
		t := time.NewTimer(w.opts.Interval)
		select {
		case <-t.C:
		case <-w.stop:
			t.Stop()
		}
		w.flush(context.Background())
	}
}

func (w *Webhook) flush(ctx context.Context) {
	w.mu.Lock()
	lines, dropped := w.lines, w.dropped
	w.lines, w.dropped = nil, 0
	w.mu.Unlock()
	if dropped > 0 {
		lines = append(lines, fmt.Sprintf("… and %d more events", dropped))
	}
	for _, msg := range pack(lines, maxContent) {
		if err := w.post(ctx, msg); err != nil {
			w.opts.Logger.Warn("notify: webhook post failed", slog.Any("error", err))
		}
	}
}

// pack joins lines into messages of at most limit bytes.
func pack(lines []string, limit int) []string {
	var out []string
	var cur strings.Builder
	for _, l := range lines {
		if len(l) > limit {
			l = l[:limit-3] + "…"
		}
		if cur.Len() > 0 && cur.Len()+1+len(l) > limit {
			out = append(out, cur.String())
			cur.Reset()
		}
		if cur.Len() > 0 {
			cur.WriteByte('\n')
		}
		cur.WriteString(l)
	}
	if cur.Len() > 0 {
		out = append(out, cur.String())
	}
	return out
}

// post sends one message, waiting out up to three 429s.
func (w *Webhook) post(ctx context.Context, content string) error {
	body, err := json.Marshal(map[string]any{
		"content": content, "username": w.opts.Username,
		// Never ping anyone from a status line.
		"allowed_mentions": map[string]any{"parse": []string{}},
	})
	if err != nil {
		return err
	}
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.opts.URL, bytes.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := w.opts.Client.Do(req)
		if err != nil {
			return fmt.Errorf("notify: post: %w", err)
		}
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		_ = resp.Body.Close()
		switch {
		case resp.StatusCode/100 == 2:
			return nil
		case resp.StatusCode == http.StatusTooManyRequests && attempt < 3:
			wait := retryAfter(resp.Header.Get("Retry-After"))
			select {
			case <-time.After(wait):
			case <-ctx.Done():
				return ctx.Err()
			}
		default:
			return fmt.Errorf("notify: post: %s: %s", resp.Status, bytes.TrimSpace(msg))
		}
	}
}

func retryAfter(h string) time.Duration {
	f, err := strconv.ParseFloat(h, 64)
	if err != nil || f < 0 || math.IsNaN(f) {
		return time.Second
	}
	return time.Duration(math.Min(f, 60) * float64(time.Second))
}
