package redisipc

import (
	"sync"
	"time"
)

// reply is what a waiting call receives: a reply envelope or a failure.
type reply struct {
	env *envelope
	err error
}

type pendingCall struct {
	ch chan reply
}

// failer returns a writer callback that fails the call when its request
// could not be written.
func (p *pendingCall) failer() func(error) {
	return func(err error) {
		if err != nil {
			select {
			case p.ch <- reply{err: err}:
			default:
			}
		}
	}
}

// pendingCalls maps request ids to waiting calls. Ids are per process, so
// the one reply reader can route every answer without any other key.
type pendingCalls struct {
	mu sync.Mutex
	m  map[string]*pendingCall
}

func (p *pendingCalls) add(id string, answers int) *pendingCall {
	c := &pendingCall{ch: make(chan reply, answers)}
	p.mu.Lock()
	p.m[id] = c
	p.mu.Unlock()
	return c
}

func (p *pendingCalls) remove(id string) {
	p.mu.Lock()
	delete(p.m, id)
	p.mu.Unlock()
}

// deliver hands e to its call. A reply nobody waits for any more (the call
// timed out, or a second copy answered a reclaimed request) is dropped.
func (p *pendingCalls) deliver(e *envelope) bool {
	p.mu.Lock()
	c := p.m[e.ID]
	p.mu.Unlock()
	if c == nil {
		return false
	}
	select {
	case c.ch <- reply{env: e}:
		return true
	default:
		return false
	}
}

func (p *pendingCalls) failAll(err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.m {
		select {
		case c.ch <- reply{err: err}:
		default:
		}
	}
}

// inflightSet tracks the group entries this copy read and has not acked,
// with when their lease was last refreshed.
type inflightSet struct {
	mu sync.Mutex
	m  map[string]time.Time
}

func (s *inflightSet) add(id string, now time.Time) {
	s.mu.Lock()
	s.m[id] = now
	s.mu.Unlock()
}

func (s *inflightSet) remove(id string) {
	s.mu.Lock()
	delete(s.m, id)
	s.mu.Unlock()
}

func (s *inflightSet) len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.m)
}

// stale returns the entries whose lease is older than age and marks them
// refreshed at now.
func (s *inflightSet) stale(now time.Time, age time.Duration) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var ids []string
	for id, t := range s.m {
		if now.Sub(t) >= age {
			ids = append(ids, id)
			s.m[id] = now
		}
	}
	return ids
}
