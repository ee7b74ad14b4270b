package discordtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"strconv"
	"time"

	"github.com/disgoorg/snowflake/v2"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Stats is a JSON-friendly snapshot of everything the server counted.
type Stats struct {
	// Connections is the number of WebSocket connections accepted so far.
	Connections int64 `json:"connections"`
	// OpenConnections is the number currently open.
	OpenConnections int `json:"open_connections"`
	// ResumeURLHits counts connections through resume_gateway_url (/resume).
	ResumeURLHits  int64 `json:"resume_url_hits"`
	Identifies     int64 `json:"identifies"`
	Resumes        int64 `json:"resumes"`
	ResumeFailures int64 `json:"resume_failures"`
	Heartbeats     int64 `json:"heartbeats"`
	// Dispatches counts sequenced op 0 events (READY, GUILD_CREATE, RESUMED and
	// injected events); replays are not counted again.
	Dispatches int64 `json:"dispatches"`
	// BytesOut and FramesOut count what was written to sockets (after compression).
	BytesOut        int64 `json:"bytes_out"`
	FramesOut       int64 `json:"frames_out"`
	InvalidSessions int64 `json:"invalid_sessions_sent"`
	ReconnectsSent  int64 `json:"reconnects_sent"`
	// Stalls counts connections made half-open by StallShard.
	Stalls           int64 `json:"stalls"`
	CommandsReceived int64 `json:"commands_received"`
	// Withheld counts deliveries skipped because the session lacked the event's
	// intent; ContentBlanked counts guild messages delivered with their content
	// emptied for lack of MESSAGE_CONTENT; MemberRequestsRefused counts
	// REQUEST_GUILD_MEMBERS for a whole member list without GUILD_MEMBERS, which
	// Discord leaves unanswered.
	Withheld              int64 `json:"withheld"`
	ContentBlanked        int64 `json:"content_blanked"`
	MemberRequestsRefused int64 `json:"member_requests_refused"`
	// ServerCloses and ClientCloses count close codes by who started the close;
	// 1006 in ClientCloses is a connection that ended without a close frame.
	ServerCloses          map[int]int64 `json:"server_closes"`
	ClientCloses          map[int]int64 `json:"client_closes"`
	ViolationCount        int           `json:"violation_count"`
	SessionStartTotal     int           `json:"session_start_total"`
	SessionStartRemaining int           `json:"session_start_remaining"`
	// SessionStartExhausted counts identifies accepted after remaining reached zero.
	SessionStartExhausted int64 `json:"session_start_exhausted"`
	MessagesPosted        int   `json:"messages_posted"`
	// REST counts requests by route ("GET /gateway/bot", "unknown") and status.
	REST       map[string]map[int]int64 `json:"rest"`
	Config     Config                   `json:"config"`
	Identify   []IdentifyRecord         `json:"identify_log"`
	ResumeLog  []ResumeRecord           `json:"resume_log"`
	Violations []Violation              `json:"violations"`
	Sessions   []SessionInfo            `json:"sessions"`
	Uptime     time.Duration            `json:"uptime"`
}

// Stats returns a snapshot of the server's counters and logs.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := Stats{
		Connections: s.counters.Connections, OpenConnections: len(s.conns),
		ResumeURLHits: s.counters.ResumeURLHits, Identifies: s.counters.Identifies,
		Resumes: s.counters.Resumes, ResumeFailures: s.counters.ResumeFailures,
		Heartbeats: s.counters.Heartbeats, Dispatches: s.counters.Dispatches,
		BytesOut: s.bytesOut.Load(), FramesOut: s.framesOut.Load(),
		InvalidSessions: s.counters.InvalidSessions, ReconnectsSent: s.counters.Reconnects, Stalls: s.counters.Stalls,
		CommandsReceived: s.counters.MessagesReceived,
		Withheld:         s.counters.Withheld, ContentBlanked: s.counters.ContentBlanked,
		MemberRequestsRefused: s.counters.MemberRequestsRefused,
		ServerCloses:          maps.Clone(s.counters.ServerCloses), ClientCloses: maps.Clone(s.counters.ClientCloses),
		ViolationCount: len(s.violations), SessionStartTotal: s.opts.SessionStartTotal,
		SessionStartRemaining: s.remaining, SessionStartExhausted: s.counters.StartsExhausted,
		MessagesPosted: len(s.messages), REST: map[string]map[int]int64{}, Config: Config(s.cfg),
		Identify:   append([]IdentifyRecord{}, s.identifies...),
		ResumeLog:  append([]ResumeRecord{}, s.resumes...),
		Violations: append([]Violation{}, s.violations...),
		Sessions:   s.sessionsLocked(time.Now()),
		Uptime:     time.Since(s.startedAt),
	}
	for route, m := range s.rest {
		st.REST[route] = maps.Clone(m)
	}
	return st
}

func (s *Server) handleStats(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Stats())
}

func (s *Server) handleMessages(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.Messages())
}

func (s *Server) handleWorld(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, s.World())
}

func fakeError(w http.ResponseWriter, status int, err error) {
	writeJSON(w, status, map[string]string{"error": err.Error()})
}

// DispatchRequest is the body of POST /_fake/dispatch. With Shard set the event goes
// to that shard (DispatchToShard); otherwise it is routed by GuildID (or the
// payload's guild id).
type DispatchRequest struct {
	GuildID snowflake.ID    `json:"guild_id,omitempty"`
	Shard   *int            `json:"shard,omitempty"`
	T       string          `json:"t"`
	D       json.RawMessage `json:"d"`
}

func (s *Server) handleDispatch(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		fakeError(w, http.StatusMethodNotAllowed, errors.New("POST a JSON {guild_id, t, d}"))
		return
	}
	var req DispatchRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, maxRequestBodyBytes)).Decode(&req); err != nil {
		fakeError(w, http.StatusBadRequest, err)
		return
	}
	var (
		res Dispatched
		err error
	)
	if req.Shard != nil {
		res, err = s.DispatchToShard(*req.Shard, req.T, req.D)
	} else {
		res, err = s.Dispatch(req.GuildID, req.T, req.D)
	}
	switch {
	case errors.Is(err, ErrInvalidPayload):
		fakeError(w, http.StatusBadRequest, err)
	case errors.Is(err, ErrNoSession), errors.Is(err, ErrWithheld):
		writeJSON(w, http.StatusConflict, map[string]any{"error": err.Error(), "dispatched": res})
	case err != nil:
		fakeError(w, http.StatusServiceUnavailable, err)
	default:
		writeJSON(w, http.StatusOK, res)
	}
}

// MessageRequest is the body of POST /_fake/message: a user posts Content in
// ChannelID, or in the first text channel of GuildID (default: the first
// guild), as AuthorID (default: the guild's first human member). Ids may be
// JSON strings, as Discord writes them, or numbers.
type MessageRequest struct {
	ChannelID flexID `json:"channel_id"`
	GuildID   flexID `json:"guild_id"`
	AuthorID  flexID `json:"author_id"`
	Content   string `json:"content"`
}

// flexID is a snowflake written as a JSON string or number.
type flexID snowflake.ID

func (id *flexID) UnmarshalJSON(b []byte) error {
	if str, err := strconv.Unquote(string(b)); err == nil {
		b = []byte(str)
	}
	if string(b) == "" || string(b) == "null" {
		*id = 0
		return nil
	}
	v, err := strconv.ParseUint(string(b), 10, 64)
	if err != nil {
		return fmt.Errorf("bad snowflake %s", b)
	}
	*id = flexID(v)
	return nil
}

// handleMessage is POST /_fake/message: SendMessage over HTTP, so a user
// message can be tried with curl.
func (s *Server) handleMessage(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		fakeError(w, http.StatusMethodNotAllowed, errors.New(`POST a JSON {"content": "...", "channel_id" or "guild_id", "author_id"}`))
		return
	}
	var req MessageRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, maxRequestBodyBytes)).Decode(&req); err != nil {
		fakeError(w, http.StatusBadRequest, err)
		return
	}
	sent, err := s.SendMessage(UserMessage{
		ChannelID: snowflake.ID(req.ChannelID), GuildID: snowflake.ID(req.GuildID),
		AuthorID: snowflake.ID(req.AuthorID), Content: req.Content,
	})
	switch {
	case errors.Is(err, ErrInvalidPayload), errors.Is(err, ErrNoChannel):
		fakeError(w, http.StatusBadRequest, err)
	case errors.Is(err, ErrNoSession), errors.Is(err, ErrWithheld):
		writeJSON(w, http.StatusConflict, map[string]any{"error": err.Error(), "message": sent})
	case err != nil:
		fakeError(w, http.StatusServiceUnavailable, err)
	default:
		writeJSON(w, http.StatusOK, sent)
	}
}

func (s *Server) handleControl(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	shard, err := strconv.Atoi(q.Get("shard"))
	if err != nil {
		fakeError(w, http.StatusBadRequest, errors.New("shard=N is required"))
		return
	}
	switch action := q.Get("action"); action {
	case "reconnect":
		err = s.Reconnect(shard)
	case "invalidate":
		err = s.InvalidateSession(shard, false)
	case "invalidate_resumable":
		err = s.InvalidateSession(shard, true)
	case "close":
		code, cerr := strconv.Atoi(q.Get("code"))
		if cerr != nil {
			code = 4000
		}
		err = s.CloseShard(shard, code)
	case "drop":
		err = s.DropShard(shard)
	case "heartbeat":
		err = s.RequestHeartbeat(shard)
	default:
		fakeError(w, http.StatusBadRequest, errors.New("action must be reconnect, invalidate, invalidate_resumable, close, drop or heartbeat"))
		return
	}
	if err != nil {
		fakeError(w, http.StatusConflict, err)
		return
	}
	st, _ := s.ShardStatus(shard)
	writeJSON(w, http.StatusOK, map[string]any{"ok": true, "shard": st})
}

// MarshalJSON writes durations as Go duration strings ("5s"), the form
// /_fake/config accepts back.
func (c Config) MarshalJSON() ([]byte, error) {
	return json.Marshal(map[string]any{
		"identify_window":  c.IdentifyWindow.String(),
		"max_concurrency":  c.MaxConcurrency,
		"violation_action": c.ViolationAction,
		"hello_delay":      c.HelloDelay.String(),
	})
}

// UnmarshalJSON reads what MarshalJSON writes; durations may also be milliseconds.
func (c *Config) UnmarshalJSON(b []byte) error {
	var up configUpdate
	if err := json.Unmarshal(b, &up); err != nil {
		return err
	}
	if up.IdentifyWindow != nil {
		c.IdentifyWindow = time.Duration(*up.IdentifyWindow)
	}
	if up.MaxConcurrency != nil {
		c.MaxConcurrency = *up.MaxConcurrency
	}
	if up.ViolationAction != nil {
		c.ViolationAction = *up.ViolationAction
	}
	if up.HelloDelay != nil {
		c.HelloDelay = time.Duration(*up.HelloDelay)
	}
	return nil
}

// configUpdate accepts durations as Go strings ("2s") or milliseconds.
type configUpdate struct {
	IdentifyWindow  *flexDuration `json:"identify_window"`
	MaxConcurrency  *int          `json:"max_concurrency"`
	ViolationAction *string       `json:"violation_action"`
	HelloDelay      *flexDuration `json:"hello_delay"`
}

type flexDuration time.Duration

func (d *flexDuration) UnmarshalJSON(b []byte) error {
	var str string
	if err := json.Unmarshal(b, &str); err == nil {
		v, err := parseFlexDuration(str)
		*d = flexDuration(v)
		return err
	}
	var ms float64
	if err := json.Unmarshal(b, &ms); err != nil {
		return err
	}
	*d = flexDuration(time.Duration(ms * float64(time.Millisecond)))
	return nil
}

func parseFlexDuration(str string) (time.Duration, error) {
	if ms, err := strconv.ParseFloat(str, 64); err == nil {
		return time.Duration(ms * float64(time.Millisecond)), nil
	}
	return time.ParseDuration(str)
}

// handleConfig shows the runtime config on GET and changes it with query parameters
// (?identify_window=2s&max_concurrency=4&violation_action=record&hello_delay=0s) or
// a JSON body with the same keys.
func (s *Server) handleConfig(w http.ResponseWriter, r *http.Request) {
	var up configUpdate
	q := r.URL.Query()
	for key, set := range map[string]func(string) error{
		"identify_window": func(v string) error {
			d, err := parseFlexDuration(v)
			up.IdentifyWindow = (*flexDuration)(&d)
			return err
		},
		"hello_delay": func(v string) error {
			d, err := parseFlexDuration(v)
			up.HelloDelay = (*flexDuration)(&d)
			return err
		},
		"max_concurrency": func(v string) error {
			n, err := strconv.Atoi(v)
			up.MaxConcurrency = &n
			return err
		},
		"violation_action": func(v string) error {
			up.ViolationAction = &v
			return nil
		},
	} {
		if v := q.Get(key); v != "" {
			if err := set(v); err != nil {
				fakeError(w, http.StatusBadRequest, err)
				return
			}
		}
	}
	if r.Method == http.MethodPost || r.Method == http.MethodPut || r.Method == http.MethodPatch {
		body, _ := io.ReadAll(io.LimitReader(r.Body, maxRequestBodyBytes))
		if len(body) > 0 {
			if err := json.Unmarshal(body, &up); err != nil {
				fakeError(w, http.StatusBadRequest, err)
				return
			}
		}
	}
	if up.ViolationAction != nil {
		if err := s.SetViolationAction(*up.ViolationAction); err != nil {
			fakeError(w, http.StatusBadRequest, err)
			return
		}
	}
	if up.IdentifyWindow != nil {
		s.SetIdentifyWindow(time.Duration(*up.IdentifyWindow))
	}
	if up.MaxConcurrency != nil {
		s.SetMaxConcurrency(*up.MaxConcurrency)
	}
	if up.HelloDelay != nil {
		s.SetHelloDelay(time.Duration(*up.HelloDelay))
	}
	writeJSON(w, http.StatusOK, s.Config())
}

// handleRateLimit injects 429s: POST /_fake/ratelimit?count=N&retry_after=1s.
func (s *Server) handleRateLimit(w http.ResponseWriter, r *http.Request) {
	n, err := strconv.Atoi(r.URL.Query().Get("count"))
	if err != nil {
		n = 1
	}
	retry := time.Second
	if v := r.URL.Query().Get("retry_after"); v != "" {
		if retry, err = parseFlexDuration(v); err != nil {
			fakeError(w, http.StatusBadRequest, err)
			return
		}
	}
	s.InjectRateLimit(n, retry)
	writeJSON(w, http.StatusOK, map[string]any{"count": n, "retry_after": retry.String()})
}

func (s *Server) metricsHandler() http.Handler {
	return promhttp.HandlerFor(s.registry, promhttp.HandlerOpts{})
}

// Registry returns the server's own Prometheus registry (served at /_fake/metrics).
func (s *Server) Registry() *prometheus.Registry { return s.registry }

// collector turns a Stats snapshot into metrics at scrape time, so the JSON stats and
// the metrics can never disagree.
type collector struct{ s *Server }

var (
	descConnections  = prometheus.NewDesc("discordtest_gateway_connections_total", "WebSocket connections accepted.", nil, nil)
	descOpenConns    = prometheus.NewDesc("discordtest_gateway_open_connections", "WebSocket connections open now.", nil, nil)
	descResumeURL    = prometheus.NewDesc("discordtest_gateway_resume_url_connections_total", "Connections through resume_gateway_url.", nil, nil)
	descIdentifies   = prometheus.NewDesc("discordtest_gateway_identifies_total", "Accepted IDENTIFYs.", nil, nil)
	descResumes      = prometheus.NewDesc("discordtest_gateway_resumes_total", "RESUME attempts by result.", []string{"result"}, nil)
	descHeartbeats   = prometheus.NewDesc("discordtest_gateway_heartbeats_total", "Heartbeats received.", nil, nil)
	descDispatches   = prometheus.NewDesc("discordtest_gateway_dispatches_total", "Sequenced dispatch events.", nil, nil)
	descBytesOut     = prometheus.NewDesc("discordtest_gateway_bytes_out_total", "Bytes written to WebSockets after compression.", nil, nil)
	descViolations   = prometheus.NewDesc("discordtest_gateway_identify_violations_total", "Identify concurrency violations.", nil, nil)
	descCloses       = prometheus.NewDesc("discordtest_gateway_closes_total", "Connection closes by initiator and code.", []string{"by", "code"}, nil)
	descRemaining    = prometheus.NewDesc("discordtest_session_start_remaining", "session_start_limit.remaining.", nil, nil)
	descSessions     = prometheus.NewDesc("discordtest_gateway_sessions", "Sessions by state.", []string{"state"}, nil)
	descREST         = prometheus.NewDesc("discordtest_rest_requests_total", "REST requests by route and status.", []string{"route", "status"}, nil)
	descMessagesPost = prometheus.NewDesc("discordtest_rest_messages_posted_total", "Messages posted over REST.", nil, nil)
)

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descConnections, descOpenConns, descResumeURL, descIdentifies, descResumes,
		descHeartbeats, descDispatches, descBytesOut, descViolations, descCloses, descRemaining, descSessions, descREST, descMessagesPost} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	counter := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter(descConnections, float64(st.Connections))
	gauge(descOpenConns, float64(st.OpenConnections))
	counter(descResumeURL, float64(st.ResumeURLHits))
	counter(descIdentifies, float64(st.Identifies))
	counter(descResumes, float64(st.Resumes), "ok")
	counter(descResumes, float64(st.ResumeFailures), "failed")
	counter(descHeartbeats, float64(st.Heartbeats))
	counter(descDispatches, float64(st.Dispatches))
	counter(descBytesOut, float64(st.BytesOut))
	counter(descViolations, float64(st.ViolationCount))
	for code, n := range st.ServerCloses {
		counter(descCloses, float64(n), "server", strconv.Itoa(code))
	}
	for code, n := range st.ClientCloses {
		counter(descCloses, float64(n), "client", strconv.Itoa(code))
	}
	gauge(descRemaining, float64(st.SessionStartRemaining))
	states := map[string]int{"attached": 0, "detached": 0, "invalidated": 0}
	for _, sess := range st.Sessions {
		switch {
		case sess.Invalidated:
			states["invalidated"]++
		case sess.Attached:
			states["attached"]++
		default:
			states["detached"]++
		}
	}
	for state, n := range states {
		gauge(descSessions, float64(n), state)
	}
	for route, m := range st.REST {
		for status, n := range m {
			counter(descREST, float64(n), route, strconv.Itoa(status))
		}
	}
	counter(descMessagesPost, float64(st.MessagesPosted))
}
