package discordtest

import (
	"time"
)

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
