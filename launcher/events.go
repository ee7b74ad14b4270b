package launcher

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/lifecycle"
)

// sink runs the launcher's Redis writes and the user's OnEvent callback on
// one goroutine, in order, so that neither a slow Redis nor a slow callback
// ever delays supervision (killing a hung cluster must not wait on them).
type sink struct {
	rdb     redis.UniversalClient
	ks      keyspace.Keyspace
	onEvent func(lifecycle.Event)
	log     *slog.Logger

	mu     sync.Mutex
	queue  []func()
	wake   chan struct{}
	closed bool
	done   chan struct{}
}

func newSink(rdb redis.UniversalClient, ks keyspace.Keyspace, onEvent func(lifecycle.Event), log *slog.Logger) *sink {
	s := &sink{rdb: rdb, ks: ks, onEvent: onEvent, log: log, wake: make(chan struct{}, 1), done: make(chan struct{})}
	go s.loop()
	return s
}

// push queues f. The queue is unbounded: a burst of events during a mass
// restart must not block the supervisors that produce them.
func (s *sink) push(f func()) {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.queue = append(s.queue, f)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *sink) loop() {
	defer close(s.done)
	for {
		s.mu.Lock()
		batch := s.queue
		s.queue = nil
		closed := s.closed
		s.mu.Unlock()
		for _, f := range batch {
			f()
		}
		if len(batch) == 0 {
			if closed {
				return
			}
			<-s.wake
		}
	}
}

// do runs a Redis write with its own deadline: it must work while the
// launcher is stopping, after its context ended.
func (s *sink) do(f func(context.Context) error) {
	s.push(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := f(ctx); err != nil {
			s.log.Warn("launcher: Redis write failed", slog.Any("error", err))
		}
	})
}

// event publishes ev to the Redis stream and hands it to OnEvent.
func (s *sink) event(ev lifecycle.Event) {
	if ev.At.IsZero() {
		ev.At = time.Now()
	}
	s.do(func(ctx context.Context) error { return lifecycle.Publish(ctx, s.rdb, s.ks, ev) })
	s.deliver(ev)
}

// deliver hands ev to OnEvent only; for events a cluster already published.
func (s *sink) deliver(ev lifecycle.Event) {
	if s.onEvent == nil {
		return
	}
	s.push(func() {
		defer func() {
			if r := recover(); r != nil {
				s.log.Error("launcher: OnEvent panicked", slog.Any("panic", r), slog.String("event", string(ev.Type)))
			}
		}()
		s.onEvent(ev)
	})
}

// close runs what is queued and stops.
func (s *sink) close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
	<-s.done
}
