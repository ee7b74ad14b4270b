package discordtest

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"time"

	"github.com/disgoorg/disgo/gateway"
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
		wake: make(chan struct{}, 1), written: make(chan struct{}, 1), quit: make(chan struct{}),
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

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("discordtest: marshal: " + err.Error())
	}
	return b
}
