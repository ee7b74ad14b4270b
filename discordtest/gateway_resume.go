package discordtest

import (
	"encoding/json"
	"time"
)

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
