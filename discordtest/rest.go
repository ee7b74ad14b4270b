package discordtest

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"io"
	"math"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/disgoorg/snowflake/v2"
)

// Discord JSON error codes used by the fake.
const (
	codeUnknownChannel     = 10003
	codeUnknownGuild       = 10004
	codeUnknownMember      = 10007
	codeUnknownUser        = 10013
	codeUnknownWebhook     = 10015
	codeEmptyMessage       = 50006
	codeNonTextChannel     = 50008
	codeInvalidWebhookTok  = 50027
	codeInvalidFormBody    = 50035
	restPrefix             = "/api/v10"
	maxRequestBodyBytes    = 8 << 20
	sessionStartResetAfter = 24 * time.Hour
)

type handlerFunc func(w http.ResponseWriter, r *http.Request) (status int)

// statusRecorder remembers the status for per-route counters.
type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	api := func(path string, auth bool, methods map[string]http.HandlerFunc) {
		mux.HandleFunc(restPrefix+path, s.restHandler(path, auth, methods))
	}
	api("/gateway", false, map[string]http.HandlerFunc{"GET": s.getGateway})
	api("/gateway/bot", true, map[string]http.HandlerFunc{"GET": s.getGatewayBot})
	api("/users/@me", true, map[string]http.HandlerFunc{"GET": s.getSelfUser})
	api("/users/@me/guilds", true, map[string]http.HandlerFunc{"GET": s.getSelfGuilds})
	api("/users/{id}", true, map[string]http.HandlerFunc{"GET": s.getUser})
	api("/applications/@me", true, map[string]http.HandlerFunc{"GET": s.getApplication})
	api("/oauth2/applications/@me", true, map[string]http.HandlerFunc{"GET": s.getApplication})
	api("/guilds/{id}", true, map[string]http.HandlerFunc{"GET": s.getGuild})
	api("/guilds/{id}/channels", true, map[string]http.HandlerFunc{"GET": s.getGuildChannels})
	api("/guilds/{id}/roles", true, map[string]http.HandlerFunc{"GET": s.getGuildRoles})
	api("/guilds/{id}/members", true, map[string]http.HandlerFunc{"GET": s.listGuildMembers})
	api("/guilds/{id}/members/{user}", true, map[string]http.HandlerFunc{"GET": s.getGuildMember})
	api("/channels/{id}", true, map[string]http.HandlerFunc{"GET": s.getChannel})
	api("/channels/{id}/messages", true, map[string]http.HandlerFunc{"POST": s.postMessage})
	api("/webhooks/{id}/{token}", false, map[string]http.HandlerFunc{"POST": s.executeWebhook})
	mux.HandleFunc("/api/", s.restHandler("", false, nil))

	mux.HandleFunc("/{$}", func(w http.ResponseWriter, r *http.Request) { s.serveGateway(w, r, false) })
	mux.HandleFunc("/resume", func(w http.ResponseWriter, r *http.Request) { s.serveGateway(w, r, true) })

	mux.HandleFunc("/_fake/stats", s.handleStats)
	mux.HandleFunc("/_fake/messages", s.handleMessages)
	mux.HandleFunc("/_fake/dispatch", s.handleDispatch)
	mux.HandleFunc("/_fake/message", s.handleMessage)
	mux.HandleFunc("/_fake/control", s.handleControl)
	mux.HandleFunc("/_fake/config", s.handleConfig)
	mux.HandleFunc("/_fake/world", s.handleWorld)
	mux.HandleFunc("/_fake/ratelimit", s.handleRateLimit)
	mux.Handle("/_fake/metrics", s.metricsHandler())
	return mux
}

// restHandler wraps a REST route: method dispatch, authentication, injected 429s,
// rate-limit headers and per-route counters. A nil methods map is the catch-all 404.
func (s *Server) restHandler(path string, auth bool, methods map[string]http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: http.StatusOK}
		route := "unknown"
		defer func() { s.countREST(route, rec.status) }()
		h, ok := methods[r.Method]
		if methods == nil {
			writeError(rec, http.StatusNotFound, 0, "404: Not Found")
			return
		}
		route = r.Method + " " + path
		if !ok {
			route = "unknown"
			writeError(rec, http.StatusMethodNotAllowed, 0, "405: Method Not Allowed")
			return
		}
		if auth && r.Header.Get("Authorization") != "Bot "+s.opts.Token {
			writeError(rec, http.StatusUnauthorized, 0, "401: Unauthorized")
			return
		}
		bucket := bucketFor(path)
		if s.takeRateLimit(rec, bucket) {
			return
		}
		h(rec, r)
	}
}

func bucketFor(path string) string {
	h := fnv.New64a()
	_, _ = h.Write([]byte(path))
	return strconv.FormatUint(h.Sum64(), 16)
}

// takeRateLimit answers with an injected 429 if one is pending; otherwise it sets
// ordinary rate-limit headers. disgo insists on a reset header whenever a bucket
// header is present, and on an integer Retry-After plus Via for a 429 (without Via it
// assumes a Cloudflare ban).
func (s *Server) takeRateLimit(w http.ResponseWriter, bucket string) bool {
	s.mu.Lock()
	limited := s.rateLimit > 0
	retry := s.rateLimitFor
	if limited {
		s.rateLimit--
	}
	s.mu.Unlock()
	h := w.Header()
	h.Set("X-RateLimit-Bucket", bucket)
	h.Set("X-RateLimit-Limit", "50")
	now := time.Now()
	if !limited {
		h.Set("X-RateLimit-Remaining", "49")
		h.Set("X-RateLimit-Reset-After", "1.000")
		h.Set("X-RateLimit-Reset", fmt.Sprintf("%.3f", float64(now.Add(time.Second).UnixMilli())/1000))
		return false
	}
	secs := max(1, int(math.Ceil(retry.Seconds())))
	h.Set("X-RateLimit-Remaining", "0")
	h.Set("X-RateLimit-Reset-After", fmt.Sprintf("%.3f", retry.Seconds()))
	h.Set("X-RateLimit-Reset", fmt.Sprintf("%.3f", float64(now.Add(retry).UnixMilli())/1000))
	h.Set("X-RateLimit-Scope", "user")
	h.Set("Retry-After", strconv.Itoa(secs))
	h.Set("Via", "1.1 google")
	writeJSON(w, http.StatusTooManyRequests, map[string]any{
		"message": "You are being rate limited.", "retry_after": retry.Seconds(), "global": false,
	})
	return true
}

func (s *Server) countREST(route string, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	m := s.rest[route]
	if m == nil {
		m = map[int]int64{}
		s.rest[route] = m
	}
	m[status]++
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status, code int, msg string) {
	writeJSON(w, status, wireError{Message: msg, Code: code})
}

func pathID(r *http.Request, name string) (snowflake.ID, bool) {
	id, err := snowflake.Parse(r.PathValue(name))
	return id, err == nil
}

func (s *Server) getGateway(w http.ResponseWriter, _ *http.Request) {
	writeJSON(w, http.StatusOK, map[string]string{"url": s.gatewayURL})
}

func (s *Server) getGatewayBot(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	remaining, maxConc, shards := s.remaining, s.cfg.MaxConcurrency, s.opts.Shards
	if s.recommended > 0 {
		shards = s.recommended
	}
	s.mu.Unlock()
	resetAfter := sessionStartResetAfter - time.Since(s.startedAt)%sessionStartResetAfter
	writeJSON(w, http.StatusOK, map[string]any{
		"url":    s.gatewayURL,
		"shards": shards,
		"session_start_limit": map[string]int{
			"total": s.opts.SessionStartTotal, "remaining": remaining,
			"reset_after": int(resetAfter.Milliseconds()), "max_concurrency": maxConc,
		},
	})
}

func (s *Server) getSelfUser(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	u := s.world.selfUser()
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, u)
}

func (s *Server) getSelfGuilds(w http.ResponseWriter, r *http.Request) {
	type partialGuild struct {
		ID          snowflake.ID `json:"id"`
		Name        string       `json:"name"`
		Icon        *string      `json:"icon"`
		Banner      *string      `json:"banner"`
		Owner       bool         `json:"owner"`
		Permissions string       `json:"permissions"`
		Features    []string     `json:"features"`
	}
	limit := 200
	if l, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && l > 0 && l <= 200 {
		limit = l
	}
	after, _ := snowflake.Parse(r.URL.Query().Get("after"))
	s.mu.Lock()
	out := []partialGuild{}
	for _, g := range s.world.Guilds {
		if g.ID <= after || len(out) >= limit {
			continue
		}
		out = append(out, partialGuild{ID: g.ID, Name: g.Name, Owner: g.OwnerID == s.opts.AppID,
			Permissions: strconv.FormatUint(everyonePermissions, 10), Features: []string{}})
	}
	s.mu.Unlock()
	slices.SortFunc(out, func(a, b partialGuild) int { return cmpID(a.ID, b.ID) })
	writeJSON(w, http.StatusOK, out)
}

func cmpID(a, b snowflake.ID) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func (s *Server) getUser(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(r, "id")
	s.mu.Lock()
	var u *User
	if ok {
		u, ok = s.world.User(id)
	}
	var out wireUser
	if ok {
		out = u.wire()
	}
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, codeUnknownUser, "Unknown User")
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getApplication(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	app := wireApplication{
		ID: s.opts.AppID, Name: "Fake Bot", Description: "A bot running against discordtest",
		RPCOrigins: []string{}, BotPublic: true, Bot: s.world.Bot.wire(),
		VerifyKey: fmt.Sprintf("%064x", uint64(s.opts.AppID)), Tags: []string{},
		GuildCount: len(s.world.Guilds),
	}
	if len(s.world.Users) > 0 {
		app.Owner = s.world.Users[0].wire()
	} else {
		app.Owner = s.world.Bot.wire()
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusOK, app)
}

// withGuild runs fn with the guild named by the {id} path value, or answers 404.
func (s *Server) withGuild(w http.ResponseWriter, r *http.Request, fn func(g *Guild) (any, int, string)) {
	id, ok := pathID(r, "id")
	s.mu.Lock()
	var g *Guild
	if ok {
		g, ok = s.world.Guild(id)
	}
	if !ok {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, codeUnknownGuild, "Unknown Guild")
		return
	}
	out, code, msg := fn(g)
	s.mu.Unlock()
	if code != 0 {
		status := http.StatusNotFound
		if code == codeInvalidFormBody {
			status = http.StatusBadRequest
		}
		writeError(w, status, code, msg)
		return
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) getGuild(w http.ResponseWriter, r *http.Request) {
	withCounts := r.URL.Query().Get("with_counts") == "true"
	s.withGuild(w, r, func(g *Guild) (any, int, string) {
		wg := g.wireGuild()
		if withCounts {
			wg.ApproximateMemberCount = intPtr(len(g.Members))
			wg.ApproximatePresenceCount = intPtr(0)
		}
		return wg, 0, ""
	})
}

func (s *Server) getGuildChannels(w http.ResponseWriter, r *http.Request) {
	s.withGuild(w, r, func(g *Guild) (any, int, string) {
		out := make([]wireChannel, 0, len(g.Channels))
		for i := range g.Channels {
			out = append(out, g.Channels[i].wire(true))
		}
		return out, 0, ""
	})
}

func (s *Server) getGuildRoles(w http.ResponseWriter, r *http.Request) {
	s.withGuild(w, r, func(g *Guild) (any, int, string) {
		return g.wireGuild().Roles, 0, ""
	})
}

func (s *Server) listGuildMembers(w http.ResponseWriter, r *http.Request) {
	limit := 1
	if v := r.URL.Query().Get("limit"); v != "" {
		l, err := strconv.Atoi(v)
		if err != nil || l < 1 || l > 1000 {
			writeError(w, http.StatusBadRequest, codeInvalidFormBody, "Invalid Form Body")
			return
		}
		limit = l
	}
	after, _ := snowflake.Parse(r.URL.Query().Get("after"))
	s.withGuild(w, r, func(g *Guild) (any, int, string) {
		members := slices.Clone(g.Members)
		slices.SortFunc(members, func(a, b Member) int { return cmpID(a.UserID, b.UserID) })
		out := []wireMember{}
		for i := range members {
			if members[i].UserID <= after {
				continue
			}
			if len(out) >= limit {
				break
			}
			out = append(out, s.world.wireMember(&members[i], 0))
		}
		return out, 0, ""
	})
}

func (s *Server) getGuildMember(w http.ResponseWriter, r *http.Request) {
	uid, okUser := pathID(r, "user")
	s.withGuild(w, r, func(g *Guild) (any, int, string) {
		if !okUser {
			return nil, codeUnknownUser, "Unknown User"
		}
		if m, ok := s.world.Member(g.ID, uid); ok {
			return s.world.wireMember(m, 0), 0, ""
		}
		if _, ok := s.world.User(uid); !ok {
			return nil, codeUnknownUser, "Unknown User"
		}
		return nil, codeUnknownMember, "Unknown Member"
	})
}

func (s *Server) getChannel(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(r, "id")
	s.mu.Lock()
	var out wireChannel
	if ok {
		var ch *Channel
		if ch, ok = s.world.Channel(id); ok {
			out = ch.wire(true)
		}
	}
	s.mu.Unlock()
	if !ok {
		writeError(w, http.StatusNotFound, codeUnknownChannel, "Unknown Channel")
		return
	}
	writeJSON(w, http.StatusOK, out)
}

// messageBody is what clients post to create a message or execute a webhook.
type messageBody struct {
	Content    string          `json:"content"`
	Embeds     json.RawMessage `json:"embeds"`
	Components json.RawMessage `json:"components"`
	Nonce      json.RawMessage `json:"nonce"`
	TTS        bool            `json:"tts"`
	Flags      int             `json:"flags"`
	Username   string          `json:"username"`
	// MessageReference makes the message a reply.
	MessageReference *wireMessageReference `json:"message_reference"`
}

// readMessageBody accepts JSON or multipart/form-data with a payload_json part (what
// disgo sends when files are attached).
func readMessageBody(r *http.Request) (messageBody, json.RawMessage, error) {
	var raw []byte
	if strings.HasPrefix(r.Header.Get("Content-Type"), "multipart/form-data") {
		if err := r.ParseMultipartForm(maxRequestBodyBytes); err != nil {
			return messageBody{}, nil, err
		}
		raw = []byte(r.FormValue("payload_json"))
	} else {
		b, err := io.ReadAll(io.LimitReader(r.Body, maxRequestBodyBytes))
		if err != nil {
			return messageBody{}, nil, err
		}
		raw = b
	}
	var body messageBody
	if len(raw) == 0 {
		raw = []byte("{}")
	}
	if err := json.Unmarshal(raw, &body); err != nil {
		return messageBody{}, nil, err
	}
	return body, raw, nil
}

func hasEmbeds(e json.RawMessage) bool {
	var list []json.RawMessage
	return json.Unmarshal(e, &list) == nil && len(list) > 0
}

func orEmptyList(b json.RawMessage) json.RawMessage {
	if len(b) == 0 || string(b) == "null" {
		return json.RawMessage("[]")
	}
	return b
}

func (s *Server) postMessage(w http.ResponseWriter, r *http.Request) {
	chID, ok := pathID(r, "id")
	body, raw, err := readMessageBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, codeInvalidFormBody, "Invalid Form Body")
		return
	}
	s.mu.Lock()
	var ch Channel
	if ok {
		var p *Channel
		if p, ok = s.world.Channel(chID); ok {
			ch = *p
		}
	}
	if !ok {
		s.mu.Unlock()
		writeError(w, http.StatusNotFound, codeUnknownChannel, "Unknown Channel")
		return
	}
	if ch.Type == ChannelTypeCategory {
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, codeNonTextChannel, "Cannot send messages in a non-text channel")
		return
	}
	if body.Content == "" && !hasEmbeds(body.Embeds) && len(body.Components) == 0 {
		s.mu.Unlock()
		writeError(w, http.StatusBadRequest, codeEmptyMessage, "Cannot send an empty message")
		return
	}
	now := time.Now()
	msg := wireMessage{
		ID: s.newID(), ChannelID: ch.ID, Author: s.world.Bot.wire(), Content: body.Content,
		Timestamp: discordTime(now), TTS: body.TTS, Mentions: []any{}, MentionRoles: []any{},
		Attachments: []any{}, Embeds: orEmptyList(body.Embeds), Components: orEmptyList(body.Components),
		Flags: body.Flags, Nonce: body.Nonce,
	}
	var replyTo snowflake.ID
	if ref := body.MessageReference; ref != nil && ref.MessageID != nil && ref.Type == 0 {
		replyTo = *ref.MessageID
		gid := ch.GuildID
		msg.Type = messageTypeReply
		msg.MessageReference = &wireMessageReference{MessageID: &replyTo, ChannelID: &ch.ID, GuildID: &gid}
	}
	s.messages = append(s.messages, PostedMessage{
		ID: msg.ID, ChannelID: ch.ID, GuildID: ch.GuildID, Content: body.Content,
		Embeds: body.Embeds, ReplyTo: replyTo, Raw: raw, At: now,
	})
	var echo []byte
	if s.opts.EchoMessages {
		ev := msg
		gid := ch.GuildID
		ev.GuildID = &gid
		if m, ok := s.world.Member(gid, s.opts.AppID); ok {
			wm := s.world.wireMember(m, 0)
			wm.User = nil
			ev.Member = &wm
		}
		echo = mustJSON(ev)
	}
	s.notifyLocked()
	s.mu.Unlock()
	if echo != nil {
		_, _ = s.Dispatch(ch.GuildID, "MESSAGE_CREATE", json.RawMessage(echo))
	}
	writeJSON(w, http.StatusOK, msg)
}

func (s *Server) executeWebhook(w http.ResponseWriter, r *http.Request) {
	id, ok := pathID(r, "id")
	if !ok {
		writeError(w, http.StatusNotFound, codeUnknownWebhook, "Unknown Webhook")
		return
	}
	token := r.PathValue("token")
	body, raw, err := readMessageBody(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, codeInvalidFormBody, "Invalid Form Body")
		return
	}
	if body.Content == "" && !hasEmbeds(body.Embeds) && len(body.Components) == 0 {
		writeError(w, http.StatusBadRequest, codeEmptyMessage, "Cannot send an empty message")
		return
	}
	s.mu.Lock()
	wh, registered := s.webhooks[id]
	if registered && wh.Token != token {
		s.mu.Unlock()
		writeError(w, http.StatusUnauthorized, codeInvalidWebhookTok, "Invalid Webhook Token")
		return
	}
	channelID := wh.ChannelID
	if !registered {
		// An unregistered webhook has no channel; its own id keeps the message valid.
		channelID = id
	}
	now := time.Now()
	username := body.Username
	if username == "" {
		username = "Fake Webhook"
	}
	msg := wireMessage{
		ID: s.newID(), ChannelID: channelID, Author: wireUser{ID: id, Username: username, Discriminator: "0000", Bot: true},
		Content: body.Content, Timestamp: discordTime(now), TTS: body.TTS, Mentions: []any{}, MentionRoles: []any{},
		Attachments: []any{}, Embeds: orEmptyList(body.Embeds), Components: orEmptyList(body.Components),
		Flags: body.Flags, WebhookID: &id,
	}
	s.messages = append(s.messages, PostedMessage{
		ID: msg.ID, ChannelID: wh.ChannelID, GuildID: wh.GuildID, WebhookID: id, Content: body.Content,
		Embeds: body.Embeds, Raw: raw, At: now,
	})
	s.notifyLocked()
	s.mu.Unlock()
	if r.URL.Query().Get("wait") == "true" {
		writeJSON(w, http.StatusOK, msg)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
