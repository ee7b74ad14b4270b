package discordtest

import (
	"strconv"
	"time"

	"github.com/gorilla/websocket"
)

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
