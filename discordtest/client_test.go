package discordtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"strings"
	"testing"
	"time"

	"github.com/disgoorg/disgo/gateway"
	"github.com/gorilla/websocket"
	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
)

// wsClient is a minimal gateway client on gorilla/websocket, used instead of disgo
// inside the test binary because disgo's gateway is not race-free.
type wsClient struct {
	t           testing.TB
	ws          *websocket.Conn
	compression string
	buf         *pipeBuffer
	inflator    io.Reader
}

// gwFrame is one received gateway payload.
type gwFrame struct {
	Op  int             `json:"op"`
	S   *int            `json:"s"`
	T   *string         `json:"t"`
	D   json.RawMessage `json:"d"`
	raw []byte
}

func (f gwFrame) typ() string {
	if f.T == nil {
		return ""
	}
	return *f.T
}

func (f gwFrame) seq() int {
	if f.S == nil {
		return -1
	}
	return *f.S
}

// pipeBuffer never reports EOF, so a stream decompressor can be fed frame by frame
// (the same technique disgo uses).
type pipeBuffer struct{ b bytes.Buffer }

func (p *pipeBuffer) Read(b []byte) (int, error) {
	n, err := p.b.Read(b)
	if err == io.EOF {
		return n, nil
	}
	return n, err
}

func dial(t testing.TB, srv *Server, path, compression string) *wsClient {
	t.Helper()
	u := srv.GatewayURL() + path + "?v=10&encoding=json"
	if compression != "" {
		u += "&compress=" + compression
	}
	ws, _, err := websocket.DefaultDialer.Dial(u, nil)
	if err != nil {
		t.Fatalf("dial %s: %v", u, err)
	}
	c := &wsClient{t: t, ws: ws, compression: compression, buf: &pipeBuffer{}}
	t.Cleanup(func() { _ = ws.Close() })
	return c
}

// read returns the next payload, failing the test on a timeout. Every payload must
// decode with disgo's own gateway.Message, which is the check that matters: it is
// what a real disgo client does with it.
func (c *wsClient) read() gwFrame {
	c.t.Helper()
	f, err := c.readErr(5 * time.Second)
	if err != nil {
		c.t.Fatalf("read: %v", err)
	}
	return f
}

func (c *wsClient) readErr(timeout time.Duration) (gwFrame, error) {
	_ = c.ws.SetReadDeadline(time.Now().Add(timeout))
	var raw []byte
	switch c.compression {
	case "":
		mt, data, err := c.ws.ReadMessage()
		if err != nil {
			return gwFrame{}, err
		}
		if mt != websocket.TextMessage {
			return gwFrame{}, errors.New("binary frame without compression")
		}
		raw = data
	case "zlib-stream":
		for {
			mt, data, err := c.ws.ReadMessage()
			if err != nil {
				return gwFrame{}, err
			}
			if mt != websocket.BinaryMessage {
				return gwFrame{}, errors.New("text frame with zlib-stream")
			}
			c.buf.b.Write(data)
			if bytes.HasSuffix(data, []byte{0, 0, 0xff, 0xff}) {
				break
			}
		}
		if c.inflator == nil {
			zr, err := zlib.NewReader(c.buf)
			if err != nil {
				return gwFrame{}, err
			}
			c.inflator = zr
		}
	case "zstd-stream":
		mt, data, err := c.ws.ReadMessage()
		if err != nil {
			return gwFrame{}, err
		}
		if mt != websocket.BinaryMessage {
			return gwFrame{}, errors.New("text frame with zstd-stream")
		}
		c.buf.b.Write(data)
		if c.inflator == nil {
			zr, err := zstd.NewReader(c.buf, zstd.WithDecoderConcurrency(1))
			if err != nil {
				return gwFrame{}, err
			}
			c.inflator = zr
		}
	}
	if c.inflator != nil {
		var m json.RawMessage
		if err := json.NewDecoder(c.inflator).Decode(&m); err != nil {
			return gwFrame{}, err
		}
		raw = m
		c.buf.b.Reset()
	}
	var f gwFrame
	if err := json.Unmarshal(raw, &f); err != nil {
		return gwFrame{}, err
	}
	f.raw = raw
	var dm gateway.Message
	if err := json.Unmarshal(raw, &dm); err != nil {
		c.t.Errorf("disgo cannot decode %s: %v", raw, err)
	}
	if f.Op == opDispatch && f.S == nil {
		c.t.Errorf("dispatch without s: %s", raw)
	}
	return f, nil
}

// readUntil reads until a payload matches, returning everything read.
func (c *wsClient) readUntil(match func(gwFrame) bool) []gwFrame {
	c.t.Helper()
	var got []gwFrame
	for {
		f := c.read()
		got = append(got, f)
		if match(f) {
			return got
		}
	}
}

func (c *wsClient) send(op int, d any) {
	c.t.Helper()
	if err := c.ws.WriteJSON(map[string]any{"op": op, "d": d}); err != nil {
		c.t.Fatalf("send op %d: %v", op, err)
	}
}

func (c *wsClient) sendRaw(b string) {
	c.t.Helper()
	if err := c.ws.WriteMessage(websocket.TextMessage, []byte(b)); err != nil {
		c.t.Fatalf("send: %v", err)
	}
}

func (c *wsClient) hello() int {
	c.t.Helper()
	f := c.read()
	if f.Op != opHello {
		c.t.Fatalf("first payload op %d, want HELLO: %s", f.Op, f.raw)
	}
	var d struct {
		HeartbeatInterval int `json:"heartbeat_interval"`
	}
	_ = json.Unmarshal(f.D, &d)
	return d.HeartbeatInterval
}

// identifyPayload asks for every intent, so that tests see every event unless
// they ask for less (identifyPayloadIntents).
func identifyPayload(token string, shard, count int) map[string]any {
	return identifyPayloadIntents(token, shard, count, gateway.IntentsAll)
}

func identifyPayloadIntents(token string, shard, count int, intents gateway.Intents) map[string]any {
	return map[string]any{
		"token": token, "intents": int(intents),
		"properties": map[string]string{"os": "linux", "browser": "test", "device": "test"},
		"shard":      []int{shard, count}, "large_threshold": 50,
	}
}

// readySession is what the client learned from a successful IDENTIFY.
type readySession struct {
	ID        string
	ResumeURL string
	Seq       int
	Guilds    []string
}

// identify sends IDENTIFY with every intent and reads READY plus the
// GUILD_CREATE burst.
func (c *wsClient) identify(token string, shard, count, wantGuilds int) readySession {
	c.t.Helper()
	return c.identifyIntents(gateway.IntentsAll, token, shard, count, wantGuilds)
}

// identifyIntents is identify with the given intents.
func (c *wsClient) identifyIntents(intents gateway.Intents, token string, shard, count, wantGuilds int) readySession {
	c.t.Helper()
	c.send(opIdentify, identifyPayloadIntents(token, shard, count, intents))
	f := c.read()
	if f.typ() != "READY" || f.seq() != 1 {
		c.t.Fatalf("want READY s=1, got %s", f.raw)
	}
	var ready struct {
		SessionID string `json:"session_id"`
		ResumeURL string `json:"resume_gateway_url"`
		Shard     [2]int `json:"shard"`
		Guilds    []struct {
			ID string `json:"id"`
		} `json:"guilds"`
	}
	if err := json.Unmarshal(f.D, &ready); err != nil {
		c.t.Fatal(err)
	}
	if ready.Shard != [2]int{shard, count} || len(ready.Guilds) != wantGuilds {
		c.t.Fatalf("READY shard %v guilds %d, want [%d %d] and %d", ready.Shard, len(ready.Guilds), shard, count, wantGuilds)
	}
	rs := readySession{ID: ready.SessionID, ResumeURL: ready.ResumeURL, Seq: 1}
	for i := 0; i < wantGuilds; i++ {
		g := c.read()
		if g.typ() != "GUILD_CREATE" || g.seq() != i+2 {
			c.t.Fatalf("want GUILD_CREATE s=%d, got %s", i+2, g.raw)
		}
		var gd struct {
			ID string `json:"id"`
		}
		_ = json.Unmarshal(g.D, &gd)
		rs.Guilds = append(rs.Guilds, gd.ID)
		rs.Seq = g.seq()
	}
	return rs
}

// expectClose reads until the server closes and returns the close code.
func (c *wsClient) expectClose() int {
	c.t.Helper()
	for {
		_, err := c.readErr(5 * time.Second)
		if err == nil {
			continue
		}
		var ce *websocket.CloseError
		if errors.As(err, &ce) {
			return ce.Code
		}
		c.t.Fatalf("want a close frame, got %v", err)
	}
}

func newTestServer(t testing.TB, opts Options) *Server {
	t.Helper()
	if opts.HeartbeatInterval == 0 {
		opts.HeartbeatInterval = time.Second
	}
	srv, err := NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }
