package discordtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/disgoorg/snowflake/v2"
	"github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
)

// Errors returned by the Server.
var (
	// ErrNoSession means no live (attached or resumable) session owns the target
	// guild or shard, so the event had nowhere to go.
	ErrNoSession = errors.New("discordtest: no session for that shard")
	// ErrNotConnected means the shard has a session but no connection to act on.
	ErrNotConnected = errors.New("discordtest: shard is not connected")
	// ErrInvalidPayload means a dispatch would not decode in disgo (or would crash it).
	ErrInvalidPayload = errors.New("discordtest: invalid dispatch payload")
	// ErrClosed is returned after Close.
	ErrClosed = errors.New("discordtest: server closed")
)

// Server is a fake Discord: gateway (WebSocket) and REST on one HTTP listener.
// All methods are safe for concurrent use.
type Server struct {
	opts       Options
	ln         net.Listener
	httpSrv    *http.Server
	baseURL    string
	gatewayURL string
	upgrader   websocket.Upgrader
	registry   *prometheus.Registry
	startedAt  time.Time
	done       chan struct{}
	closeOnce  sync.Once
	bytesOut   atomic.Int64
	framesOut  atomic.Int64
	msgCounter atomic.Uint64

	mu           sync.Mutex
	cfg          runtimeConfig
	world        *World
	gen          *worldGen
	sessions     map[string]*session
	current      map[shardKey]*session
	conns        map[*conn]struct{}
	lastIdentify map[int]time.Time
	remaining    int
	// rejectCount and rejectCode: IDENTIFYs with this shard count are
	// closed with this code (RejectIdentifies); zero: none.
	rejectCount, rejectCode int
	// recommended overrides Options.Shards in /gateway/bot; 0: none.
	recommended  int
	identifies   []IdentifyRecord
	resumes      []ResumeRecord
	violations   []Violation
	messages     []PostedMessage
	webhooks     map[snowflake.ID]Webhook
	counters     counters
	rest         map[string]map[int]int64
	rateLimit    int
	rateLimitFor time.Duration
	changed      chan struct{}
	nextConnID   uint64
}

type runtimeConfig struct {
	IdentifyWindow  time.Duration
	MaxConcurrency  int
	ViolationAction string
	HelloDelay      time.Duration
}

type counters struct {
	Connections      int64
	ResumeURLHits    int64
	Identifies       int64
	Resumes          int64
	ResumeFailures   int64
	Heartbeats       int64
	Dispatches       int64
	InvalidSessions  int64
	Reconnects       int64
	Stalls           int64
	StartsExhausted  int64
	ServerCloses     map[int]int64
	ClientCloses     map[int]int64
	MessagesReceived int64
	// Intent gating (see filterIntents).
	Withheld              int64
	ContentBlanked        int64
	MemberRequestsRefused int64
}

type shardKey struct{ shard, count int }

// IdentifyRecord is one accepted IDENTIFY.
type IdentifyRecord struct {
	At         time.Time `json:"at"`
	Shard      int       `json:"shard"`
	ShardCount int       `json:"shard_count"`
	Bucket     int       `json:"bucket"`
	SessionID  string    `json:"session_id"`
	Remote     string    `json:"remote"`
	Intents    int64     `json:"intents"`
	// Violation is set when this identify broke the concurrency limit (and the
	// violation action let it through).
	Violation bool `json:"violation"`
}

// ResumeRecord is one RESUME attempt, successful or not.
type ResumeRecord struct {
	At        time.Time `json:"at"`
	Shard     int       `json:"shard"`
	SessionID string    `json:"session_id"`
	FromSeq   int       `json:"from_seq"`
	Replayed  int       `json:"replayed"`
	OK        bool      `json:"ok"`
	// Reason says why a resume failed ("unknown session", "invalidated: ...",
	// "seq ahead", "seq too old").
	Reason    string `json:"reason,omitempty"`
	Remote    string `json:"remote"`
	ResumeURL bool   `json:"resume_url"`
}

// Violation is an IDENTIFY that arrived in a concurrency bucket sooner than the
// identify window after the previous accepted IDENTIFY of that bucket.
type Violation struct {
	At         time.Time `json:"at"`
	Shard      int       `json:"shard"`
	ShardCount int       `json:"shard_count"`
	Bucket     int       `json:"bucket"`
	// SincePrevious is the time since the bucket's previous identify (JSON: ns).
	SincePrevious time.Duration `json:"since_previous"`
	Remote        string        `json:"remote"`
	Action        string        `json:"action"`
}

// SessionInfo describes a gateway session.
type SessionInfo struct {
	ID          string    `json:"id"`
	Shard       int       `json:"shard"`
	ShardCount  int       `json:"shard_count"`
	Seq         int       `json:"seq"`
	Attached    bool      `json:"attached"`
	Invalidated bool      `json:"invalidated"`
	Reason      string    `json:"reason,omitempty"`
	Intents     int64     `json:"intents"`
	CreatedAt   time.Time `json:"created_at"`
	DetachedAt  time.Time `json:"detached_at,omitzero"`
	Remote      string    `json:"remote,omitempty"`
	Buffered    int       `json:"buffered"`
}

// ShardState is what the server knows about one shard id: its newest session and
// whether a connection currently holds it.
type ShardState struct {
	Shard      int    `json:"shard"`
	ShardCount int    `json:"shard_count"`
	SessionID  string `json:"session_id,omitempty"`
	Seq        int    `json:"seq"`
	// Connected means a WebSocket is attached to the session.
	Connected bool `json:"connected"`
	// Ready means connected and the session is valid: READY or RESUMED was sent on
	// this connection.
	Ready bool `json:"ready"`
	// Resumable means the session is valid; it may be detached.
	Resumable     bool      `json:"resumable"`
	Remote        string    `json:"remote,omitempty"`
	LastHeartbeat time.Time `json:"last_heartbeat,omitzero"`
}

// PostedMessage is a message the bot created over REST, by channel message or by
// webhook execution.
type PostedMessage struct {
	ID        snowflake.ID    `json:"id"`
	ChannelID snowflake.ID    `json:"channel_id"`
	GuildID   snowflake.ID    `json:"guild_id,omitempty"`
	WebhookID snowflake.ID    `json:"webhook_id,omitempty"`
	Content   string          `json:"content"`
	Embeds    json.RawMessage `json:"embeds,omitempty"`
	// ReplyTo is the id of the message this one answers (its message_reference),
	// or zero when it is not a reply.
	ReplyTo snowflake.ID `json:"reply_to,omitempty"`
	// Raw is the request body as received (for multipart requests, payload_json).
	Raw json.RawMessage `json:"raw"`
	At  time.Time       `json:"at"`
}

// Webhook is a webhook registered with CreateWebhook.
type Webhook struct {
	ID        snowflake.ID `json:"id"`
	Token     string       `json:"token"`
	ChannelID snowflake.ID `json:"channel_id"`
	GuildID   snowflake.ID `json:"guild_id"`
}

// NewServer starts a fake Discord listening on opts.Addr. Close it when done.
func NewServer(opts Options) (*Server, error) {
	return NewServerContext(context.Background(), opts)
}

// NewServerContext is NewServer that gives up when ctx ends: generating a
// big world takes seconds, and a program being stopped should not wait for
// it. It returns an error wrapping ctx's cause then.
func NewServerContext(ctx context.Context, opts Options) (*Server, error) {
	opts, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	bot := User{ID: opts.AppID, Username: "fakebot", GlobalName: "Fake Bot", Bot: true}
	world, gen, err := generateWorld(ctx, opts.World, bot)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", opts.Addr)
	if err != nil {
		return nil, fmt.Errorf("discordtest: listen: %w", err)
	}
	host := advertisedHost(ln.Addr())
	s := &Server{
		opts:       opts,
		ln:         ln,
		baseURL:    "http://" + host,
		gatewayURL: "ws://" + host,
		upgrader: websocket.Upgrader{
			CheckOrigin:     func(*http.Request) bool { return true },
			ReadBufferSize:  4096,
			WriteBufferSize: 16384,
		},
		startedAt: time.Now(),
		done:      make(chan struct{}),
		cfg: runtimeConfig{
			IdentifyWindow:  opts.IdentifyWindow,
			MaxConcurrency:  opts.MaxConcurrency,
			ViolationAction: opts.ViolationAction,
			HelloDelay:      opts.HelloDelay,
		},
		sessions:     map[string]*session{},
		current:      map[shardKey]*session{},
		conns:        map[*conn]struct{}{},
		lastIdentify: map[int]time.Time{},
		remaining:    opts.SessionStartTotal,
		webhooks:     map[snowflake.ID]Webhook{},
		rest:         map[string]map[int]int64{},
		changed:      make(chan struct{}),
	}
	s.counters.ServerCloses = map[int]int64{}
	s.counters.ClientCloses = map[int]int64{}
	s.world, s.gen = world, gen
	s.registry = prometheus.NewRegistry()
	s.registry.MustRegister(&collector{s: s})

	s.httpSrv = &http.Server{Handler: s.routes(), ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := s.httpSrv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.opts.Logger.Error("http server stopped", "error", err)
		}
	}()
	s.opts.Logger.Info("fake discord listening", "url", s.baseURL, "guilds", len(s.world.Guilds))
	return s, nil
}

// advertisedHost turns the listen address into one clients can dial: an unspecified
// IP (0.0.0.0, ::) becomes loopback.
func advertisedHost(a net.Addr) string {
	ta, ok := a.(*net.TCPAddr)
	if !ok {
		return a.String()
	}
	ip := ta.IP
	if ip == nil || ip.IsUnspecified() {
		ip = net.IPv4(127, 0, 0, 1)
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(ta.Port))
}

// URL is the server's base URL, http://127.0.0.1:PORT.
func (s *Server) URL() string { return s.baseURL }

// RESTURL is the REST base including the API version, what rest.WithURL wants.
func (s *Server) RESTURL() string { return s.baseURL + "/api/v10" }

// GatewayURL is the gateway URL, as GET /gateway/bot reports it.
func (s *Server) GatewayURL() string { return s.gatewayURL }

// ResumeURL is the resume_gateway_url sent in READY. Connections through it are
// counted separately.
func (s *Server) ResumeURL() string { return s.gatewayURL + "/resume" }

// Token is the bot token clients must use.
func (s *Server) Token() string { return s.opts.Token }

// AppID is the application id, which is also the bot user's id.
func (s *Server) AppID() snowflake.ID { return s.opts.AppID }

// Options returns the options the server runs with, defaults filled in. Runtime
// changes (SetIdentifyWindow, ...) are not reflected; see Config.
func (s *Server) Options() Options { return s.opts }

// World returns a snapshot of the world: guilds with their channels, roles and
// members, and the user pool. Dispatched events that change the world (GUILD_UPDATE,
// CHANNEL_CREATE, ...) are applied to the server's world, not to earlier snapshots.
func (s *Server) World() *World {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.world.clone()
}

// Identifies returns every accepted IDENTIFY, oldest first.
func (s *Server) Identifies() []IdentifyRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]IdentifyRecord{}, s.identifies...)
}

// Resumes returns every RESUME attempt, oldest first.
func (s *Server) Resumes() []ResumeRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]ResumeRecord{}, s.resumes...)
}

// Violations returns every identify-concurrency violation, oldest first.
func (s *Server) Violations() []Violation {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Violation{}, s.violations...)
}

// Messages returns the messages posted over REST, oldest first.
func (s *Server) Messages() []PostedMessage {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]PostedMessage{}, s.messages...)
}

// SessionStartRemaining is session_start_limit.remaining: SessionStartTotal minus
// the accepted identifies, never below zero.
func (s *Server) SessionStartRemaining() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.remaining
}

// Sessions returns every session the server knows, oldest first.
func (s *Server) Sessions() []SessionInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sessionsLocked(time.Now())
}

func (s *Server) sessionsLocked(now time.Time) []SessionInfo {
	out := make([]SessionInfo, 0, len(s.sessions))
	for _, sess := range s.sessions {
		s.liveLocked(sess, now)
		out = append(out, sess.info())
	}
	slices.SortFunc(out, func(a, b SessionInfo) int {
		if c := a.CreatedAt.Compare(b.CreatedAt); c != 0 {
			return c
		}
		return a.Shard - b.Shard
	})
	return out
}

// ShardStatus reports the newest session of shard (of any shard count).
// ok is false when that shard never identified.
func (s *Server) ShardStatus(shard int) (st ShardState, ok bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.newestSessionLocked(shard, false)
	if sess == nil {
		return ShardState{Shard: shard}, false
	}
	return s.shardStateLocked(sess, time.Now()), true
}

// ShardsReady reports whether every shard 0..shardCount-1 of a bot running
// shardCount shards is connected and ready.
func (s *Server) ShardsReady(shardCount int) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	now := time.Now()
	for i := 0; i < shardCount; i++ {
		sess := s.current[shardKey{i, shardCount}]
		if sess == nil || !s.liveLocked(sess, now) || sess.conn == nil {
			return false
		}
	}
	return true
}

func (s *Server) shardStateLocked(sess *session, now time.Time) ShardState {
	live := s.liveLocked(sess, now)
	st := ShardState{
		Shard: sess.shard, ShardCount: sess.count, SessionID: sess.id, Seq: sess.seq,
		Connected: sess.conn != nil, Resumable: live,
	}
	st.Ready = st.Connected && live
	if sess.conn != nil {
		st.Remote = sess.conn.remote
		st.LastHeartbeat = sess.conn.lastHeartbeat
	}
	return st
}

// newestSessionLocked returns the most recently created current session with the
// given shard id. With liveOnly, invalidated or expired sessions are skipped.
func (s *Server) newestSessionLocked(shard int, liveOnly bool) *session {
	var best *session
	now := time.Now()
	for k, sess := range s.current {
		if k.shard != shard {
			continue
		}
		if liveOnly && !s.liveLocked(sess, now) {
			continue
		}
		if best == nil || sess.created.After(best.created) {
			best = sess
		}
	}
	return best
}

// WaitFor blocks until cond returns true or ctx ends. cond is evaluated after every
// state change of the server (and at least every 20ms), without server locks held,
// so it may call any Server method.
func (s *Server) WaitFor(ctx context.Context, cond func(*Server) bool) error {
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		s.mu.Lock()
		ch := s.changed
		s.mu.Unlock()
		if cond(s) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("discordtest: condition not met: %w", ctx.Err())
		case <-ch:
		case <-tick.C:
		}
	}
}

// notifyLocked wakes WaitFor callers.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// Config is the part of the configuration that can change at runtime.
type Config struct {
	IdentifyWindow  time.Duration `json:"identify_window"`
	MaxConcurrency  int           `json:"max_concurrency"`
	ViolationAction string        `json:"violation_action"`
	HelloDelay      time.Duration `json:"hello_delay"`
}

// Config returns the current runtime configuration.
func (s *Server) Config() Config {
	s.mu.Lock()
	defer s.mu.Unlock()
	return Config(s.cfg)
}

// SetHelloDelay delays HELLO on connections opened from now on.
func (s *Server) SetHelloDelay(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg.HelloDelay = max(d, 0)
}

// SetIdentifyWindow changes the identify window used by the concurrency check.
func (s *Server) SetIdentifyWindow(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if d > 0 {
		s.cfg.IdentifyWindow = d
	}
}

// RejectIdentifies makes every IDENTIFY that asks for shardCount shards
// close with code (4004 Authentication failed, 4011 Sharding required, …)
// from now on; RejectIdentifies(0, 0) ends it. Sessions of other shard
// counts are unaffected, so a bot's running shards keep serving while a
// re-shard's new ones fail.
func (s *Server) RejectIdentifies(shardCount, code int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rejectCount, s.rejectCode = shardCount, code
}

// SetRecommendedShards changes the shard count /gateway/bot recommends (a
// bot that grew); values below 1 restore Options.Shards. Sessions of any
// shard count keep working.
func (s *Server) SetRecommendedShards(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.recommended = max(n, 0)
}

// SetMaxConcurrency changes max_concurrency (reported by /gateway/bot and used for
// buckets). Values below 1 are ignored.
func (s *Server) SetMaxConcurrency(n int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if n > 0 {
		s.cfg.MaxConcurrency = n
	}
}

// SetViolationAction changes what happens on an identify-concurrency violation.
func (s *Server) SetViolationAction(action string) error {
	if err := checkViolationAction(action); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg.ViolationAction = action
	return nil
}

// CreateWebhook registers a webhook on channelID and returns it. Executions of
// registered webhooks are checked against the token; unregistered webhook ids are
// accepted with any token, so clients configured with an arbitrary webhook URL work.
func (s *Server) CreateWebhook(channelID snowflake.ID) (Webhook, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ch, ok := s.world.Channel(channelID)
	if !ok {
		return Webhook{}, fmt.Errorf("discordtest: unknown channel %s", channelID)
	}
	wh := Webhook{ID: s.newID(), Token: randomHex(34), ChannelID: ch.ID, GuildID: ch.GuildID}
	s.webhooks[wh.ID] = wh
	return wh, nil
}

// InjectRateLimit makes the next n authorized REST requests fail with 429 and an
// integer Retry-After of retryAfter (rounded up to whole seconds, minimum 1).
func (s *Server) InjectRateLimit(n int, retryAfter time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.rateLimit = max(n, 0)
	s.rateLimitFor = retryAfter
}

// newID returns a fresh snowflake for runtime-created objects (messages, webhooks).
func (s *Server) newID() snowflake.ID {
	n := s.msgCounter.Add(1)
	return snowflake.New(time.Now()) | snowflake.ID(n%4096)
}

// Close stops the listener and drops every connection without a close frame, as a
// network failure would. It is safe to call more than once.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		close(s.done)
		err = s.httpSrv.Close()
		s.mu.Lock()
		conns := make([]*conn, 0, len(s.conns))
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.notifyLocked()
		s.mu.Unlock()
		for _, c := range conns {
			c.drop()
		}
	})
	return err
}
