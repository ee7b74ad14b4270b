package discordtest

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/disgoorg/disgo/gateway"
	"github.com/disgoorg/snowflake/v2"
	"github.com/gorilla/websocket"
	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
)

// Gateway opcodes.
const (
	opDispatch                = 0
	opHeartbeat               = 1
	opIdentify                = 2
	opPresenceUpdate          = 3
	opVoiceStateUpdate        = 4
	opResume                  = 6
	opReconnect               = 7
	opRequestGuildMembers     = 8
	opInvalidSession          = 9
	opHello                   = 10
	opHeartbeatACK            = 11
	opRequestSoundboardSounds = 31
)

// Compression values of the ?compress= query parameter.
const (
	compressNone = ""
	compressZlib = "zlib-stream"
	compressZstd = "zstd-stream"
)

// Every frame carries "d": disgo unmarshals d for op 1, 9 and 10 and fails on a
// missing one.
var (
	frameACK               = []byte(`{"op":11,"s":null,"t":null,"d":null}`)
	frameReconnect         = []byte(`{"op":7,"s":null,"t":null,"d":null}`)
	frameInvalidFalse      = []byte(`{"op":9,"s":null,"t":null,"d":false}`)
	frameInvalidTrue       = []byte(`{"op":9,"s":null,"t":null,"d":true}`)
	frameHeartbeatRequest  = []byte(`{"op":1,"s":null,"t":null,"d":null}`)
	knownIntents           = int64(gateway.IntentsAll)
	privilegedIntents      = int64(gateway.IntentsPrivileged)
	closeGrace             = time.Second
	commandWindow          = time.Minute
	commandLimit           = 120
	maxCommandPayloadBytes = 1 << 20
)

// session is a gateway session: it outlives connections until it is invalidated.
// All fields are guarded by Server.mu.
type session struct {
	id             string
	shard, count   int
	intents        int64
	largeThreshold int
	created        time.Time
	seq            int
	// buf[bufStart:] are the buffered dispatches, oldest first.
	buf         []bufferedEvent
	bufStart    int
	conn        *conn
	detachedAt  time.Time
	invalidated bool
	reason      string
	remote      string
}

type bufferedEvent struct {
	seq   int
	frame []byte
}

func (sess *session) buffered() []bufferedEvent { return sess.buf[sess.bufStart:] }

func (sess *session) info() SessionInfo {
	return SessionInfo{
		ID: sess.id, Shard: sess.shard, ShardCount: sess.count, Seq: sess.seq,
		Attached: sess.conn != nil, Invalidated: sess.invalidated, Reason: sess.reason,
		Intents: sess.intents, CreatedAt: sess.created, DetachedAt: sess.detachedAt,
		Remote: sess.remote, Buffered: len(sess.buffered()),
	}
}

type frameKind int

const (
	frameData frameKind = iota
	frameClose
)

type frame struct {
	kind frameKind
	data []byte
	code int
	text string
}

// conn is one WebSocket connection. Frames are queued and written by one writer
// goroutine, so that the server can enqueue under its lock without waiting on the
// network, and so that sequence order equals queue order.
type conn struct {
	s           *Server
	ws          *websocket.Conn
	id          uint64
	remote      string
	compression string
	viaResume   bool
	wake        chan struct{}
	quit        chan struct{}
	quitOnce    sync.Once

	mu      sync.Mutex
	queue   []frame
	stopped bool
	// stalled makes the connection half-open: it stays up, but nothing more
	// reaches the client (no dispatch, no HEARTBEAT_ACK).
	stalled bool

	// Guarded by Server.mu.
	sess          *session
	lastHeartbeat time.Time
	serverClose   int
	hbTimer       *time.Timer
	gone          bool

	// Only touched by the reader goroutine.
	commands []time.Time
}

func (c *conn) send(data []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped || c.stalled {
		return
	}
	c.queue = append(c.queue, frame{kind: frameData, data: data})
	c.wakeLocked()
}

func (c *conn) wakeLocked() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// closeWith queues a close frame after the pending frames; nothing is sent after it.
func (c *conn) closeWith(code int, text string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return
	}
	c.stopped = true
	c.queue = append(c.queue, frame{kind: frameClose, code: code, text: text})
	c.wakeLocked()
}

// drop closes the TCP connection without a close frame, like a network failure.
func (c *conn) drop() {
	c.mu.Lock()
	c.stopped = true
	c.queue = nil
	c.mu.Unlock()
	_ = c.ws.Close()
	c.finish()
}

func (c *conn) isStopped() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopped
}

func (c *conn) finish() {
	c.quitOnce.Do(func() { close(c.quit) })
}

func (c *conn) writeLoop() {
	var (
		buf  bytes.Buffer
		zstw *zstd.Encoder
		zlw  *zlib.Writer
	)
	defer func() {
		if zstw != nil {
			_ = zstw.Close()
		}
	}()
	for {
		select {
		case <-c.wake:
		case <-c.quit:
			return
		}
		c.mu.Lock()
		q := c.queue
		c.queue = nil
		c.mu.Unlock()
		for _, f := range q {
			if f.kind == frameClose {
				_ = c.ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(f.code, f.text), time.Now().Add(closeGrace))
				// Give the client a moment to answer with its own close frame, which is
				// how a clean close looks on the wire; then cut the connection anyway.
				time.AfterFunc(closeGrace, func() { _ = c.ws.Close() })
				return
			}
			mt := websocket.TextMessage
			msg := f.data
			switch c.compression {
			case compressZstd:
				buf.Reset()
				if zstw == nil {
					zstw, _ = zstd.NewWriter(&buf, zstd.WithEncoderConcurrency(1),
						zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithWindowSize(1<<20), zstd.WithLowerEncoderMem(true))
				}
				_, _ = zstw.Write(f.data)
				_ = zstw.Flush()
				mt, msg = websocket.BinaryMessage, buf.Bytes()
			case compressZlib:
				buf.Reset()
				if zlw == nil {
					zlw = zlib.NewWriter(&buf)
				}
				_, _ = zlw.Write(f.data)
				_ = zlw.Flush()
				mt, msg = websocket.BinaryMessage, buf.Bytes()
			}
			_ = c.ws.SetWriteDeadline(time.Now().Add(10 * time.Second))
			if err := c.ws.WriteMessage(mt, msg); err != nil {
				c.mu.Lock()
				c.stopped = true
				c.queue = nil
				c.mu.Unlock()
				_ = c.ws.Close()
				return
			}
			c.s.bytesOut.Add(int64(len(msg)))
			c.s.framesOut.Add(1)
		}
	}
}

// allowCommand applies Discord's 120 commands per 60 s limit.
func (c *conn) allowCommand(now time.Time) bool {
	cut := 0
	for cut < len(c.commands) && now.Sub(c.commands[cut]) >= commandWindow {
		cut++
	}
	c.commands = append(c.commands[cut:], now)
	return len(c.commands) <= commandLimit
}

func randomHex(n int) string {
	b := make([]byte, (n+1)/2)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)[:n]
}

func (s *Server) serveGateway(w http.ResponseWriter, r *http.Request, viaResume bool) {
	q := r.URL.Query()
	compression := q.Get("compress")
	switch compression {
	case compressNone, compressZlib, compressZstd:
	default:
		http.Error(w, "unsupported compress value", http.StatusBadRequest)
		return
	}
	ws, err := s.upgrader.Upgrade(w, r, nil)
	if err != nil {
		return
	}
	ws.SetReadLimit(int64(maxCommandPayloadBytes))
	c := &conn{
		s: s, ws: ws, remote: r.RemoteAddr, compression: compression, viaResume: viaResume,
		wake: make(chan struct{}, 1), quit: make(chan struct{}),
	}
	s.mu.Lock()
	select {
	case <-s.done:
		s.mu.Unlock()
		_ = ws.Close()
		return
	default:
	}
	s.nextConnID++
	c.id = s.nextConnID
	s.conns[c] = struct{}{}
	s.counters.Connections++
	if viaResume {
		s.counters.ResumeURLHits++
	}
	helloDelay := s.cfg.HelloDelay
	if s.opts.HeartbeatTimeout > 0 {
		c.hbTimer = time.AfterFunc(s.opts.HeartbeatTimeout, func() { s.heartbeatTimedOut(c) })
	}
	s.notifyLocked()
	s.mu.Unlock()

	go c.writeLoop()

	// Unsupported protocol choices fail the way Discord fails them: after the upgrade,
	// with a close code.
	if v := q.Get("v"); v != "" && v != "10" {
		s.closeConn(c, 4012, "Invalid API version.")
	} else if enc := q.Get("encoding"); enc != "" && enc != "json" {
		s.closeConn(c, 4002, "Only encoding=json is supported.")
	} else {
		go s.sendHello(c, helloDelay)
	}

	code := s.readLoop(c)
	s.connGone(c, code)
}

func (s *Server) sendHello(c *conn, delay time.Duration) {
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-c.quit:
			return
		case <-s.done:
			return
		}
	}
	hello := `{"op":10,"s":null,"t":null,"d":{"heartbeat_interval":` +
		strconv.FormatInt(s.opts.HeartbeatInterval.Milliseconds(), 10) + `,"_trace":["discordtest"]}}`
	c.send([]byte(hello))
}

// readLoop reads commands until the connection ends and returns the close code the
// client sent, or 1006 when the connection just went away.
func (s *Server) readLoop(c *conn) int {
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code
			}
			return websocket.CloseAbnormalClosure
		}
		if c.isStopped() {
			// After our close frame only the client's close frame matters.
			continue
		}
		s.mu.Lock()
		s.counters.MessagesReceived++
		s.mu.Unlock()
		if !c.allowCommand(time.Now()) {
			s.closeConn(c, 4008, "Rate limited.")
			continue
		}
		s.handleCommand(c, data)
	}
}

type command struct {
	Op *int            `json:"op"`
	D  json.RawMessage `json:"d"`
}

func (s *Server) handleCommand(c *conn, data []byte) {
	var m command
	if err := json.Unmarshal(data, &m); err != nil || m.Op == nil {
		s.closeConn(c, 4002, "Error while decoding payload.")
		return
	}
	switch *m.Op {
	case opHeartbeat:
		s.onHeartbeat(c)
	case opIdentify:
		s.onIdentify(c, m.D)
	case opResume:
		s.onResume(c, m.D)
	case opPresenceUpdate, opVoiceStateUpdate, opRequestSoundboardSounds:
		if !s.identified(c) {
			s.closeConn(c, 4003, "Not authenticated.")
		}
	case opRequestGuildMembers:
		if !s.identified(c) {
			s.closeConn(c, 4003, "Not authenticated.")
			return
		}
		s.onRequestGuildMembers(c, m.D)
	default:
		s.closeConn(c, 4001, "Unknown opcode.")
	}
}

func (s *Server) identified(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return c.sess != nil
}

func (s *Server) onHeartbeat(c *conn) {
	s.mu.Lock()
	s.counters.Heartbeats++
	c.lastHeartbeat = time.Now()
	if c.hbTimer != nil {
		c.hbTimer.Reset(s.opts.HeartbeatTimeout)
	}
	s.mu.Unlock()
	// Never ACK instantly: disgo records the send time only after its write returns,
	// so an instant loopback ACK can look older than the heartbeat and trigger a
	// false zombie reconnect.
	time.AfterFunc(s.opts.HeartbeatACKDelay, func() { c.send(frameACK) })
}

func (s *Server) heartbeatTimedOut(c *conn) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.gone {
		return
	}
	s.closeConnLocked(c, 4009, "Session timed out.")
}

// closeConn closes c with a Discord close code. Codes that end a session in Discord
// also invalidate the session attached to c.
func (s *Server) closeConn(c *conn, code int, text string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closeConnLocked(c, code, text)
}

func (s *Server) closeConnLocked(c *conn, code int, text string) {
	if c.serverClose != 0 || c.gone {
		return
	}
	c.serverClose = code
	s.counters.ServerCloses[code]++
	if c.sess != nil && invalidatesSession(code) {
		s.invalidateLocked(c.sess, "closed by server with "+strconv.Itoa(code))
	}
	c.closeWith(code, text)
	s.notifyLocked()
}

// invalidatesSession lists the close codes after which Discord will not accept a
// RESUME of the session: 4007 invalid seq, 4009 session timed out, and the codes that
// end the bot's connection for good.
func invalidatesSession(code int) bool {
	switch code {
	case 4004, 4007, 4009, 4010, 4011, 4012, 4013, 4014:
		return true
	}
	return false
}

func (s *Server) connGone(c *conn, clientCode int) {
	s.mu.Lock()
	delete(s.conns, c)
	c.gone = true
	if c.hbTimer != nil {
		c.hbTimer.Stop()
	}
	if c.serverClose == 0 {
		s.counters.ClientCloses[clientCode]++
	}
	if sess := c.sess; sess != nil && sess.conn == c {
		sess.conn = nil
		sess.detachedAt = time.Now()
		// A client closing with 1000/1001 ends its session, as on Discord. Anything
		// else (1012, 4xxx, a dropped TCP connection) leaves it resumable. When the
		// server started the close, the client's answer is only an echo.
		if c.serverClose == 0 && (clientCode == websocket.CloseNormalClosure || clientCode == websocket.CloseGoingAway) {
			s.invalidateLocked(sess, "client closed with "+strconv.Itoa(clientCode))
		}
	}
	c.sess = nil
	s.notifyLocked()
	s.mu.Unlock()
	// Late frames (a pending heartbeat ACK) have nowhere to go.
	c.mu.Lock()
	c.stopped = true
	c.queue = nil
	c.mu.Unlock()
	c.finish()
	_ = c.ws.Close()
}

func (s *Server) invalidateLocked(sess *session, reason string) {
	if sess.invalidated {
		return
	}
	sess.invalidated = true
	sess.reason = reason
	sess.buf, sess.bufStart = nil, 0
}

// liveLocked reports whether sess can still receive events or be resumed, expiring
// it when it has been detached longer than the resume window.
func (s *Server) liveLocked(sess *session, now time.Time) bool {
	if sess.invalidated {
		return false
	}
	if sess.conn == nil && !sess.detachedAt.IsZero() && now.Sub(sess.detachedAt) > s.opts.ResumeWindow {
		s.invalidateLocked(sess, "resume window expired")
		return false
	}
	return true
}

func encodeDispatch(seq int, t string, d []byte) []byte {
	b := make([]byte, 0, len(d)+len(t)+32)
	b = append(b, `{"op":0,"s":`...)
	b = strconv.AppendInt(b, int64(seq), 10)
	b = append(b, `,"t":"`...)
	b = append(b, t...)
	b = append(b, `","d":`...)
	b = append(b, d...)
	return append(b, '}')
}

// deliverLocked sequences one dispatch for sess, buffers it for RESUME and sends it
// if a connection is attached.
func (s *Server) deliverLocked(sess *session, t string, d []byte) int {
	sess.seq++
	f := encodeDispatch(sess.seq, t, d)
	sess.buf = append(sess.buf, bufferedEvent{seq: sess.seq, frame: f})
	if len(sess.buf)-sess.bufStart > s.opts.ReplayBuffer {
		sess.buf[sess.bufStart] = bufferedEvent{}
		sess.bufStart++
		if sess.bufStart >= s.opts.ReplayBuffer {
			sess.buf = append([]bufferedEvent(nil), sess.buf[sess.bufStart:]...)
			sess.bufStart = 0
		}
	}
	if sess.conn != nil {
		sess.conn.send(f)
	}
	s.counters.Dispatches++
	return sess.seq
}

type identifyData struct {
	Token          string `json:"token"`
	LargeThreshold int    `json:"large_threshold"`
	Shard          []int  `json:"shard"`
	Intents        int64  `json:"intents"`
}

func (s *Server) checkToken(token string) bool {
	return strings.TrimPrefix(token, "Bot ") == s.opts.Token
}

func (s *Server) onIdentify(c *conn, raw json.RawMessage) {
	var d identifyData
	if err := json.Unmarshal(raw, &d); err != nil {
		s.closeConn(c, 4002, "Error while decoding payload.")
		return
	}
	if !s.checkToken(d.Token) {
		s.closeConn(c, 4004, "Authentication failed.")
		return
	}
	shard, count := 0, 1
	if d.Shard != nil {
		if len(d.Shard) != 2 {
			s.closeConn(c, 4010, "Invalid shard.")
			return
		}
		shard, count = d.Shard[0], d.Shard[1]
	}
	if count < 1 || shard < 0 || shard >= count {
		s.closeConn(c, 4010, "Invalid shard.")
		return
	}
	if d.Intents < 0 || d.Intents&^knownIntents != 0 {
		s.closeConn(c, 4013, "Invalid intent(s).")
		return
	}
	allowed := privilegedIntents
	if s.opts.PrivilegedIntents != nil {
		allowed = int64(*s.opts.PrivilegedIntents)
	}
	if d.Intents&privilegedIntents&^allowed != 0 {
		s.closeConn(c, 4014, "Disallowed intent(s).")
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if c.gone || c.serverClose != 0 {
		return
	}
	if c.sess != nil {
		s.closeConnLocked(c, 4005, "Already authenticated.")
		return
	}
	owned := s.world.GuildsOfShard(shard, count)
	if s.opts.MaxGuildsPerShard > 0 && len(owned) > s.opts.MaxGuildsPerShard {
		s.closeConnLocked(c, 4011, "Sharding required.")
		return
	}

	now := time.Now()
	bucket := shard % s.cfg.MaxConcurrency
	violation := false
	if last, ok := s.lastIdentify[bucket]; ok && now.Sub(last) < s.cfg.IdentifyWindow {
		violation = true
		s.violations = append(s.violations, Violation{
			At: now, Shard: shard, ShardCount: count, Bucket: bucket,
			SincePrevious: now.Sub(last), Remote: c.remote, Action: s.cfg.ViolationAction,
		})
		s.opts.Logger.Warn("identify concurrency violated", "shard", shard, "bucket", bucket, "since_previous", now.Sub(last))
		switch s.cfg.ViolationAction {
		case ViolationInvalidSession:
			s.counters.InvalidSessions++
			c.send(frameInvalidFalse)
			s.notifyLocked()
			return
		case ViolationClose4008:
			s.closeConnLocked(c, 4008, "Rate limited.")
			return
		}
	}
	s.lastIdentify[bucket] = now
	if s.remaining > 0 {
		s.remaining--
	} else {
		s.counters.StartsExhausted++
	}

	key := shardKey{shard, count}
	if old := s.current[key]; old != nil && !old.invalidated {
		// A shard has one session at a time; the old holder learns that its session is
		// gone the way Discord tells it, with INVALID_SESSION.
		s.invalidateLocked(old, "superseded by a new identify")
		if old.conn != nil {
			s.counters.InvalidSessions++
			old.conn.send(frameInvalidFalse)
		}
	}
	sess := &session{
		id: randomHex(32), shard: shard, count: count, intents: d.Intents,
		largeThreshold: d.LargeThreshold, created: now, remote: c.remote, conn: c,
	}
	s.sessions[sess.id] = sess
	s.current[key] = sess
	c.sess = sess

	ready := wireReady{
		V: 10, User: s.world.selfUser(), Guilds: make([]wireUnavailableGuild, 0, len(owned)),
		SessionID: sess.id, SessionType: "normal", ResumeGatewayURL: s.ResumeURL(),
		Shard: [2]int{shard, count}, Application: wireReadyApplication{ID: s.opts.AppID},
		PrivateChannels: []any{}, Relationships: []any{}, Presences: []any{}, GuildJoinRequests: []any{},
		GeoOrderedRTCRegion: []string{"local"}, Trace: []string{"discordtest"},
	}
	for _, g := range owned {
		ready.Guilds = append(ready.Guilds, wireUnavailableGuild{ID: g.ID, Unavailable: true})
	}
	s.deliverLocked(sess, "READY", mustJSON(ready))
	allMembers := s.opts.IgnoreIntents || d.Intents&int64(gateway.IntentGuildPresences) != 0
	for _, g := range owned {
		s.deliverLocked(sess, "GUILD_CREATE", mustJSON(s.world.guildCreate(g, d.LargeThreshold, allMembers)))
	}
	s.identifies = append(s.identifies, IdentifyRecord{
		At: now, Shard: shard, ShardCount: count, Bucket: bucket, SessionID: sess.id,
		Remote: c.remote, Intents: d.Intents, Violation: violation,
	})
	s.counters.Identifies++
	s.opts.Logger.Info("identify", "shard", shard, "shard_count", count, "session_id", sess.id, "guilds", len(owned))
	s.notifyLocked()
}

type resumeData struct {
	Token     string `json:"token"`
	SessionID string `json:"session_id"`
	Seq       int    `json:"seq"`
}

func (s *Server) onResume(c *conn, raw json.RawMessage) {
	var d resumeData
	if err := json.Unmarshal(raw, &d); err != nil {
		s.closeConn(c, 4002, "Error while decoding payload.")
		return
	}
	if !s.checkToken(d.Token) {
		s.closeConn(c, 4004, "Authentication failed.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.gone || c.serverClose != 0 {
		return
	}
	if c.sess != nil {
		s.closeConnLocked(c, 4005, "Already authenticated.")
		return
	}
	now := time.Now()
	rec := ResumeRecord{At: now, Shard: -1, SessionID: d.SessionID, FromSeq: d.Seq, Remote: c.remote, ResumeURL: c.viaResume}
	fail := func(reason string) {
		rec.Reason = reason
		s.resumes = append(s.resumes, rec)
		s.counters.ResumeFailures++
		s.counters.InvalidSessions++
		c.send(frameInvalidFalse)
		s.opts.Logger.Info("resume refused", "session_id", d.SessionID, "reason", reason)
		s.notifyLocked()
	}
	sess := s.sessions[d.SessionID]
	if sess == nil {
		fail("unknown session")
		return
	}
	rec.Shard = sess.shard
	if !s.liveLocked(sess, now) {
		fail("invalidated: " + sess.reason)
		return
	}
	if d.Seq > sess.seq {
		fail("seq ahead")
		return
	}
	buffered := sess.buffered()
	if len(buffered) > 0 && d.Seq < buffered[0].seq-1 {
		fail("seq too old")
		return
	}
	if old := sess.conn; old != nil && old != c {
		// Only one connection may hold a session: the newer one wins.
		old.sess = nil
		s.closeConnLocked(old, 4000, "Session resumed elsewhere.")
	}
	sess.conn = c
	sess.detachedAt = time.Time{}
	sess.remote = c.remote
	c.sess = sess
	for _, ev := range buffered {
		if ev.seq > d.Seq {
			c.send(ev.frame)
			rec.Replayed++
		}
	}
	s.deliverLocked(sess, "RESUMED", []byte(`{"_trace":["discordtest"]}`))
	rec.OK = true
	s.resumes = append(s.resumes, rec)
	s.counters.Resumes++
	s.opts.Logger.Info("resume", "shard", sess.shard, "session_id", sess.id, "from_seq", d.Seq, "replayed", rec.Replayed)
	s.notifyLocked()
}

type requestMembersData struct {
	GuildID json.RawMessage `json:"guild_id"`
	Query   *string         `json:"query"`
	Limit   int             `json:"limit"`
	UserIDs json.RawMessage `json:"user_ids"`
	Nonce   string          `json:"nonce"`
}

// snowflakes accepts a snowflake or an array of them, as op 8 allows both.
func snowflakes(raw json.RawMessage) ([]snowflake.ID, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var many []snowflake.ID
	if err := json.Unmarshal(raw, &many); err == nil {
		return many, nil
	}
	var one snowflake.ID
	if err := json.Unmarshal(raw, &one); err != nil {
		return nil, err
	}
	return []snowflake.ID{one}, nil
}

type wireMembersChunk struct {
	GuildID    snowflake.ID   `json:"guild_id"`
	Members    []wireMember   `json:"members"`
	ChunkIndex int            `json:"chunk_index"`
	ChunkCount int            `json:"chunk_count"`
	NotFound   []snowflake.ID `json:"not_found"`
	Presences  []any          `json:"presences,omitempty"`
	Nonce      string         `json:"nonce,omitempty"`
}

func (s *Server) onRequestGuildMembers(c *conn, raw json.RawMessage) {
	var d requestMembersData
	if err := json.Unmarshal(raw, &d); err != nil {
		s.closeConn(c, 4002, "Error while decoding payload.")
		return
	}
	guilds, err1 := snowflakes(d.GuildID)
	users, err2 := snowflakes(d.UserIDs)
	if err1 != nil || err2 != nil {
		s.closeConn(c, 4002, "Error while decoding payload.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := c.sess
	if sess == nil || c.gone {
		return
	}
	if !s.opts.IgnoreIntents && len(users) == 0 && (d.Query == nil || *d.Query == "") &&
		sess.intents&int64(gateway.IntentGuildMembers) == 0 {
		// The whole member list needs GUILD_MEMBERS; Discord does not answer.
		s.counters.MemberRequestsRefused++
		s.notifyLocked()
		return
	}
	for _, gid := range guilds {
		g, ok := s.world.Guild(gid)
		if !ok || ShardFor(gid, sess.count) != sess.shard {
			// Discord ignores requests for guilds the shard does not own.
			continue
		}
		var members []wireMember
		notFound := []snowflake.ID{}
		if len(users) > 0 {
			for _, uid := range users {
				if m, ok := s.world.Member(gid, uid); ok {
					members = append(members, s.world.wireMember(m, 0))
				} else {
					notFound = append(notFound, uid)
				}
			}
		} else {
			query := ""
			if d.Query != nil {
				query = strings.ToLower(*d.Query)
			}
			for i := range g.Members {
				m := &g.Members[i]
				if query != "" {
					u, ok := s.world.User(m.UserID)
					if !ok || !strings.HasPrefix(strings.ToLower(u.Username), query) {
						continue
					}
				}
				members = append(members, s.world.wireMember(m, 0))
				if d.Limit > 0 && len(members) >= d.Limit {
					break
				}
			}
		}
		const chunkSize = 1000
		chunks := max(1, (len(members)+chunkSize-1)/chunkSize)
		for i := 0; i < chunks; i++ {
			part := members[min(i*chunkSize, len(members)):min((i+1)*chunkSize, len(members))]
			if part == nil {
				part = []wireMember{}
			}
			chunk := wireMembersChunk{GuildID: gid, Members: part, ChunkIndex: i, ChunkCount: chunks, NotFound: notFound, Nonce: d.Nonce}
			s.deliverLocked(sess, "GUILD_MEMBERS_CHUNK", mustJSON(chunk))
		}
	}
	s.notifyLocked()
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("discordtest: marshal: " + err.Error())
	}
	return b
}
