package discordtest

import (
	"fmt"
	"strconv"
)

// connOfShardLocked returns the newest live session of shard and its connection.
func (s *Server) connOfShardLocked(shard int) (*session, *conn, error) {
	sess := s.newestSessionLocked(shard, true)
	if sess == nil {
		return nil, nil, fmt.Errorf("%w %d", ErrNoSession, shard)
	}
	if sess.conn == nil {
		return sess, nil, fmt.Errorf("%w: shard %d", ErrNotConnected, shard)
	}
	return sess, sess.conn, nil
}

// Reconnect sends op 7 RECONNECT to shard. disgo closes with 1012 and resumes.
func (s *Server) Reconnect(shard int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, c, err := s.connOfShardLocked(shard)
	if err != nil {
		return err
	}
	s.counters.Reconnects++
	c.send(frameReconnect)
	s.notifyLocked()
	return nil
}

// InvalidateSession sends op 9 INVALID_SESSION to shard. With resumable false the
// session is invalidated first, so the client has to IDENTIFY again; with true it may
// RESUME. A non-resumable invalidation of a detached session just invalidates it.
func (s *Server) InvalidateSession(shard int, resumable bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess, c, err := s.connOfShardLocked(shard)
	if sess == nil || (c == nil && resumable) {
		return err
	}
	if !resumable {
		s.invalidateLocked(sess, "invalidated by server")
	}
	if c != nil {
		s.counters.InvalidSessions++
		if resumable {
			c.send(frameInvalidTrue)
		} else {
			c.send(frameInvalidFalse)
		}
	}
	s.notifyLocked()
	return nil
}

// CloseShard closes shard's connection with a close frame carrying code. Codes that
// end a session on Discord (4004, 4007, 4009-4014) invalidate it; others keep it
// resumable.
func (s *Server) CloseShard(shard int, code int) error {
	if code < 1000 || code > 4999 {
		return fmt.Errorf("discordtest: invalid close code %d", code)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	_, c, err := s.connOfShardLocked(shard)
	if err != nil {
		return err
	}
	s.closeConnLocked(c, code, "closed by discordtest ("+strconv.Itoa(code)+")")
	return nil
}

// DropShard cuts shard's TCP connection without a close frame (code 1006 for the
// client). The session stays resumable.
func (s *Server) DropShard(shard int) error {
	s.mu.Lock()
	_, c, err := s.connOfShardLocked(shard)
	s.mu.Unlock()
	if err != nil {
		return err
	}
	c.drop()
	return nil
}

// RequestHeartbeat sends op 1 to shard; the client must answer with a heartbeat
// right away.
func (s *Server) RequestHeartbeat(shard int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, c, err := s.connOfShardLocked(shard)
	if err != nil {
		return err
	}
	c.send(frameHeartbeatRequest)
	return nil
}

// StallShard makes shard's connection half-open, as a network path that
// silently stops delivering: the socket stays up and the server keeps
// reading, but sends nothing more on it, neither dispatches nor
// HEARTBEAT_ACKs. Dispatches still enter the session's replay buffer, so a
// client that notices the missing ACK (disgo: a zombie connection) and
// RESUMEs on a new connection receives them.
func (s *Server) StallShard(shard int) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, c, err := s.connOfShardLocked(shard)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.stalled = true
	c.mu.Unlock()
	s.counters.Stalls++
	s.notifyLocked()
	return nil
}
