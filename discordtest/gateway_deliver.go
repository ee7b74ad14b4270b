package discordtest

import (
	"strconv"
	"time"
)

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
