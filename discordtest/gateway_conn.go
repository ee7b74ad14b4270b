package discordtest

import (
	"bytes"
	"sync"
	"time"

	"github.com/gorilla/websocket"
	"github.com/klauspost/compress/zlib"
	"github.com/klauspost/compress/zstd"
)

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
	// written is signalled (never blocking) each time the writer took the
	// queued frames; a flood waits on it to top the queue up.
	written  chan struct{}
	quit     chan struct{}
	quitOnce sync.Once

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
		select {
		case c.written <- struct{}{}:
		default:
		}
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
