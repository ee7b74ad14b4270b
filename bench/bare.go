package main

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
)

// The bare baseline is the same stream round trip with no framework: the
// caller XADDs to an inbox, a copy reads it with XREADGROUP and answers each
// batch with one pipeline (XADD replies + XACK), the caller XREADs its reply
// stream. No envelope, no deadlines, no leases, no dead letters. It is the
// floor this machine and Redis allow for a streams request/response, so the
// table can say how much Megane's IPC adds on top.

const (
	bareService = "service:bare"
	bareCaller  = "bare-caller"
	bareGroup   = "bare"
)

// bareServe answers bare requests until ctx ends: it is the child's loop.
func bareServe(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace) error {
	inbox := ks.Inbox(bareService)
	for ctx.Err() == nil {
		res, err := rdb.XReadGroup(ctx, &redis.XReadGroupArgs{
			Group: bareGroup, Consumer: "c", Streams: []string{inbox, ">"}, Count: 512, Block: time.Second,
		}).Result()
		if err != nil {
			if errors.Is(err, redis.Nil) || ctx.Err() != nil {
				continue
			}
			return err
		}
		pipe := rdb.Pipeline()
		var ids []string
		for _, s := range res {
			for _, m := range s.Messages {
				ids = append(ids, m.ID)
				to, _ := m.Values["r"].(string)
				pipe.XAdd(ctx, &redis.XAddArgs{Stream: to, MaxLen: 10000, Approx: true,
					Values: []any{"i", m.Values["i"], "b", m.Values["b"]}})
			}
		}
		pipe.XAck(ctx, inbox, bareGroup, ids...)
		if _, err := pipe.Exec(ctx); err != nil && ctx.Err() == nil {
			return err
		}
	}
	return nil
}

func bareSetup(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace) error {
	err := rdb.XGroupCreateMkStream(ctx, ks.Inbox(bareService), bareGroup, "$").Err()
	if err != nil && err.Error() != "BUSYGROUP Consumer Group name already exists" {
		return err
	}
	return nil
}

// bareSeq is one sequential bare call: XADD, then block on the reply stream.
type bareSeq struct {
	rdb   redis.UniversalClient
	ks    keyspace.Keyspace
	body  []byte
	last  string
	n     int
	reply string
}

func newBareSeq(rdb redis.UniversalClient, ks keyspace.Keyspace, body []byte) *bareSeq {
	// The namespace is purged before the run, so the reply stream starts empty.
	return &bareSeq{rdb: rdb, ks: ks, body: body, last: "0", reply: ks.Replies(bareCaller + "-seq")}
}

func (b *bareSeq) call(ctx context.Context) error {
	b.n++
	id := strconv.Itoa(b.n)
	last := b.last
	if err := b.rdb.XAdd(ctx, &redis.XAddArgs{Stream: b.ks.Inbox(bareService), MaxLen: 100000, Approx: true,
		Values: []any{"i", id, "r", b.reply, "b", b.body}}).Err(); err != nil {
		return err
	}
	for {
		res, err := b.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{b.reply, last}, Count: 16, Block: 5 * time.Second}).Result()
		if err != nil {
			return err
		}
		for _, s := range res {
			for _, m := range s.Messages {
				last = m.ID
				if m.Values["i"] == id {
					b.last = last
					return nil
				}
			}
		}
	}
}

// barePipe is the concurrent bare caller: one writer goroutine pipelines
// every queued XADD, one reader goroutine hands replies to waiting callers.
type barePipe struct {
	rdb     redis.UniversalClient
	ks      keyspace.Keyspace
	body    []byte
	reply   string
	out     chan barePending
	mu      sync.Mutex
	waiting map[string]chan struct{}
	seq     atomic.Uint64
}

type barePending struct {
	id string
}

func newBarePipe(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace, body []byte) *barePipe {
	b := &barePipe{rdb: rdb, ks: ks, body: body, reply: ks.Replies(bareCaller + "-pipe"),
		out: make(chan barePending, 4096), waiting: map[string]chan struct{}{}}
	go b.writer(ctx)
	go b.reader(ctx)
	return b
}

func (b *barePipe) writer(ctx context.Context) {
	inbox := b.ks.Inbox(bareService)
	for {
		var batch []barePending
		select {
		case <-ctx.Done():
			return
		case p := <-b.out:
			batch = append(batch, p)
		}
	drain:
		for len(batch) < 1024 {
			select {
			case p := <-b.out:
				batch = append(batch, p)
			default:
				break drain
			}
		}
		pipe := b.rdb.Pipeline()
		for _, p := range batch {
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: inbox, MaxLen: 100000, Approx: true,
				Values: []any{"i", p.id, "r", b.reply, "b", b.body}})
		}
		_, _ = pipe.Exec(ctx)
	}
}

func (b *barePipe) reader(ctx context.Context) {
	last := "0"
	for ctx.Err() == nil {
		res, err := b.rdb.XRead(ctx, &redis.XReadArgs{Streams: []string{b.reply, last}, Count: 512, Block: time.Second}).Result()
		if err != nil {
			continue
		}
		for _, s := range res {
			for _, m := range s.Messages {
				last = m.ID
				id, _ := m.Values["i"].(string)
				b.mu.Lock()
				ch := b.waiting[id]
				delete(b.waiting, id)
				b.mu.Unlock()
				if ch != nil {
					close(ch)
				}
			}
		}
	}
}

func (b *barePipe) call(ctx context.Context) error {
	id := strconv.FormatUint(b.seq.Add(1), 10)
	ch := make(chan struct{})
	b.mu.Lock()
	b.waiting[id] = ch
	b.mu.Unlock()
	b.out <- barePending{id: id}
	select {
	case <-ch:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("bare call %s: no reply", id)
	case <-ctx.Done():
		return ctx.Err()
	}
}
