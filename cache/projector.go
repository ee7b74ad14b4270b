package cache

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// ErrClosed is returned by Flush after Close.
var ErrClosed = errors.New("cache: projector closed")

// eventKind is a gateway event type the projector handles.
type eventKind uint8

const (
	evIgnored eventKind = iota
	evReady
	evResumed
	evGuildCreate
	evGuildUpdate
	evGuildDelete
	evChannelCreate
	evChannelUpdate
	evChannelDelete
	evThreadCreate
	evThreadUpdate
	evThreadDelete
	evThreadListSync
	evRoleCreate
	evRoleUpdate
	evRoleDelete
	evMemberAdd
	evMemberUpdate
	evMemberRemove
	evMembersChunk
	evUserUpdate
	evEmojisUpdate
)

var eventKinds = map[string]eventKind{
	"READY":               evReady,
	"RESUMED":             evResumed,
	"GUILD_CREATE":        evGuildCreate,
	"GUILD_UPDATE":        evGuildUpdate,
	"GUILD_DELETE":        evGuildDelete,
	"CHANNEL_CREATE":      evChannelCreate,
	"CHANNEL_UPDATE":      evChannelUpdate,
	"CHANNEL_DELETE":      evChannelDelete,
	"THREAD_CREATE":       evThreadCreate,
	"THREAD_UPDATE":       evThreadUpdate,
	"THREAD_DELETE":       evThreadDelete,
	"THREAD_LIST_SYNC":    evThreadListSync,
	"GUILD_ROLE_CREATE":   evRoleCreate,
	"GUILD_ROLE_UPDATE":   evRoleUpdate,
	"GUILD_ROLE_DELETE":   evRoleDelete,
	"GUILD_MEMBER_ADD":    evMemberAdd,
	"GUILD_MEMBER_UPDATE": evMemberUpdate,
	"GUILD_MEMBER_REMOVE": evMemberRemove,
	"GUILD_MEMBERS_CHUNK": evMembersChunk,
	"USER_UPDATE":         evUserUpdate,
	"GUILD_EMOJIS_UPDATE": evEmojisUpdate,
}

// critical events carry whole state; they are queued even past QueueSize.
func (k eventKind) critical() bool {
	return k == evReady || k == evGuildCreate || k == evGuildDelete
}

type event struct {
	shard int
	kind  eventKind
	data  []byte
	hdr   header    // set by decode
	doc   *guildDoc // set by decode for GUILD_CREATE
}

// Stats are the projector's counters since it was created.
type Stats struct {
	// Events is the number of events accepted by Enqueue (ignored types excluded).
	Events uint64
	// Ignored is the number of events of types the projection does not use.
	Ignored uint64
	// Drops is the number of events Enqueue refused (queue full or closed).
	Drops uint64
	// Bad is the number of events whose payload could not be read.
	Bad uint64
	// Written is the number of events written to Redis.
	Written uint64
	// Commands is the number of Redis commands sent, reads included.
	Commands uint64
	// Batches is the number of batches written.
	Batches uint64
	// Retries is the number of failed batch attempts that were retried.
	Retries uint64
	// Queued is the number of events waiting now.
	Queued int
	// LastBatch, MaxBatch and AvgBatch are the wall time of writing a
	// batch (reads, writes and follow-ups, retries excluded).
	LastBatch, MaxBatch, AvgBatch time.Duration
}

// Projector writes gateway events into the Redis projection. Enqueue is
// called on the gateway's event path and never blocks; one writer goroutine
// decodes the queued payloads and writes them in pipelined batches.
type Projector struct {
	cfg  Config
	plan plan
	log  *slog.Logger

	mu       sync.Mutex
	queue    []event // FIFO; head at qhead
	qhead    int
	qbytes   int
	enqSeq   uint64 // events queued so far
	doneSeq  uint64 // events written so far
	doneCh   chan struct{}
	closed   bool
	kick     chan struct{}
	hurry    bool // a Flush is waiting: skip FlushInterval
	stopped  chan struct{}
	abort    context.CancelFunc
	writeCtx context.Context

	events, ignored, drops, bad, written, commands, batches, retries atomic.Uint64
	lastBatch, maxBatch, sumBatch                                    atomic.Int64

	schemaWritten bool
}

// NewProjector validates cfg, fills in its defaults and starts the writer.
// Call Close to drain and stop it.
func NewProjector(cfg Config) (*Projector, error) {
	pl, err := cfg.resolve()
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Projector{
		cfg:      cfg,
		plan:     pl,
		log:      cfg.Logger.With(slog.String("component", "cache.projector")),
		doneCh:   make(chan struct{}),
		kick:     make(chan struct{}, 1),
		stopped:  make(chan struct{}),
		abort:    cancel,
		writeCtx: ctx,
	}
	go p.run()
	return p, nil
}

// Enqueue hands one dispatch to the projector: the shard it arrived on, its
// type ("GUILD_CREATE") and the raw "d" JSON, which the projector keeps (the
// caller must not modify it afterwards). It never blocks. It returns false
// when the event was dropped: the projector is closed, or the queue is full
// and the event is not one of READY, GUILD_CREATE and GUILD_DELETE, which
// are queued anyway up to MaxQueueBytes. Event types the projection does not
// use are discarded and reported as accepted.
func (p *Projector) Enqueue(shardID int, eventType string, data []byte) bool {
	kind := eventKinds[eventType]
	if kind == evIgnored {
		p.ignored.Add(1)
		return true
	}
	p.mu.Lock()
	n := len(p.queue) - p.qhead
	if p.closed ||
		p.qbytes+len(data) > p.cfg.MaxQueueBytes ||
		(n >= p.cfg.QueueSize && !kind.critical()) {
		closed := p.closed
		p.mu.Unlock()
		if d := p.drops.Add(1); !closed && (d&(d-1)) == 0 {
			// Powers of two only: a full queue must not flood the log.
			p.log.Warn("cache: projection queue full, event dropped",
				slog.String("event", eventType), slog.Int("shard_id", shardID),
				slog.Uint64("drops", d))
		}
		return false
	}
	p.queue = append(p.queue, event{shard: shardID, kind: kind, data: data})
	p.qbytes += len(data)
	p.enqSeq++
	p.mu.Unlock()
	p.events.Add(1)
	select {
	case p.kick <- struct{}{}:
	default:
	}
	return true
}

// Flush waits until every event enqueued before the call is in Redis.
func (p *Projector) Flush(ctx context.Context) error {
	p.mu.Lock()
	target := p.enqSeq
	for p.doneSeq < target {
		if p.closed && p.stoppedNow() {
			p.mu.Unlock()
			return ErrClosed
		}
		p.hurry = true
		ch := p.doneCh
		p.mu.Unlock()
		select {
		case p.kick <- struct{}{}:
		default:
		}
		select {
		case <-ch:
		case <-p.stopped:
		case <-ctx.Done():
			return ctx.Err()
		}
		p.mu.Lock()
	}
	p.mu.Unlock()
	return nil
}

func (p *Projector) stoppedNow() bool {
	select {
	case <-p.stopped:
		return true
	default:
		return false
	}
}

// Close stops accepting events, writes what is queued and stops the writer.
// When ctx ends first, the writer is abandoned and the queued events are
// lost (the next READY or GUILD_CREATE of each shard repairs the projection).
func (p *Projector) Close(ctx context.Context) error {
	p.mu.Lock()
	p.closed = true
	p.hurry = true
	p.mu.Unlock()
	select {
	case p.kick <- struct{}{}:
	default:
	}
	select {
	case <-p.stopped:
		return nil
	case <-ctx.Done():
		p.abort()
		<-p.stopped
		return ctx.Err()
	}
}

// Stats returns the counters.
func (p *Projector) Stats() Stats {
	p.mu.Lock()
	q := len(p.queue) - p.qhead
	p.mu.Unlock()
	s := Stats{
		Events: p.events.Load(), Ignored: p.ignored.Load(), Drops: p.drops.Load(),
		Bad: p.bad.Load(), Written: p.written.Load(), Commands: p.commands.Load(),
		Batches: p.batches.Load(), Retries: p.retries.Load(), Queued: q,
		LastBatch: time.Duration(p.lastBatch.Load()),
		MaxBatch:  time.Duration(p.maxBatch.Load()),
	}
	if s.Batches > 0 {
		s.AvgBatch = time.Duration(p.sumBatch.Load() / int64(s.Batches))
	}
	return s
}

// take removes up to max events from the queue, waiting FlushInterval for a
// batch to fill. ok is false when the projector is closed and drained.
func (p *Projector) take(buf []event) ([]event, bool) {
	var waited bool
	for {
		p.mu.Lock()
		n := len(p.queue) - p.qhead
		full := n >= p.cfg.BatchSize
		if n > 0 && (full || waited || p.hurry || p.closed || p.cfg.FlushInterval < 0) {
			if n > p.cfg.BatchSize {
				n = p.cfg.BatchSize
			}
			buf = append(buf[:0], p.queue[p.qhead:p.qhead+n]...)
			for i := p.qhead; i < p.qhead+n; i++ {
				p.qbytes -= len(p.queue[i].data)
				p.queue[i] = event{}
			}
			p.qhead += n
			if p.qhead == len(p.queue) {
				p.queue = p.queue[:0]
				p.qhead = 0
			} else if p.qhead > 4096 && p.qhead > len(p.queue)/2 {
				p.queue = append(p.queue[:0], p.queue[p.qhead:]...)
				p.qhead = 0
			}
			p.mu.Unlock()
			return buf, true
		}
		if n == 0 && p.closed {
			p.mu.Unlock()
			return nil, false
		}
		p.mu.Unlock()
		if n > 0 {
			// A partial batch: give it FlushInterval to fill.
			t := time.NewTimer(p.cfg.FlushInterval)
			select {
			case <-p.kick:
			case <-t.C:
				waited = true
			case <-p.writeCtx.Done():
				t.Stop()
				return nil, false
			}
			t.Stop()
			continue
		}
		select {
		case <-p.kick:
		case <-p.writeCtx.Done():
			return nil, false
		}
	}
}

func (p *Projector) run() {
	defer close(p.stopped)
	// The decoder prepares the next batch while this goroutine writes the
	// current one.
	decoded := make(chan []event, 1)
	go func() {
		defer close(decoded)
		for {
			evs, ok := p.take(nil)
			if !ok {
				return
			}
			p.decode(evs)
			select {
			case decoded <- evs:
			case <-p.writeCtx.Done():
				p.recordBatch(evs, true)
				return
			}
		}
	}()
	backoff := p.cfg.RetryBackoff
	for evs := range decoded {
		lost := false
		for {
			start := time.Now()
			err := p.writeBatch(p.writeCtx, evs)
			if err == nil {
				d := time.Since(start)
				p.lastBatch.Store(int64(d))
				p.sumBatch.Add(int64(d))
				if int64(d) > p.maxBatch.Load() {
					p.maxBatch.Store(int64(d))
				}
				p.batches.Add(1)
				backoff = p.cfg.RetryBackoff
				break
			}
			if p.writeCtx.Err() != nil {
				lost = true
				break
			}
			p.retries.Add(1)
			p.log.Warn("cache: projection batch failed, retrying",
				slog.Int("events", len(evs)), slog.Duration("backoff", backoff), slog.Any("error", err))
			t := time.NewTimer(backoff)
			select {
			case <-t.C:
			case <-p.writeCtx.Done():
			}
			t.Stop()
			backoff = min(backoff*2, 5*time.Second)
		}
		p.recordBatch(evs, lost)
	}
}

// recordBatch accounts for a batch written (or lost) and wakes Flush.
func (p *Projector) recordBatch(evs []event, lost bool) {
	if lost {
		p.drops.Add(uint64(len(evs)))
	} else {
		p.written.Add(uint64(len(evs)))
	}
	p.mu.Lock()
	p.doneSeq += uint64(len(evs))
	if p.doneSeq >= p.enqSeq {
		p.hurry = false
	}
	close(p.doneCh)
	p.doneCh = make(chan struct{})
	p.mu.Unlock()
}
