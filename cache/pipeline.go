package cache

import (
	"errors"
	"fmt"
	"sync"

	"github.com/redis/go-redis/v9"
)

// writeConns is the number of pipelines a batch's writes are spread over,
// by key. They are sent concurrently on their own connections, so the
// client encodes one while Redis executes the other; a key always goes to
// the same pipeline, which keeps the writes to each key in order (and
// nothing relies on the order of writes to different keys).
const writeConns = 2

// to returns the pipeline of key.
func (b *batch) to(key string) redis.Pipeliner {
	var h uint32 = 2166136261
	for i := 0; i < len(key); i++ {
		h = (h ^ uint32(key[i])) * 16777619
	}
	i := h % writeConns
	b.used[i]++
	return b.pipes[i]
}

// member queues adding (or removing) m to the shared set key.
func (b *batch) setOp(key, m string, add bool) {
	ms := b.shared[key]
	if ms == nil {
		ms = map[string]bool{}
		b.shared[key] = ms
		b.sharedKeys = append(b.sharedKeys, key)
	}
	ms[m] = add
}

// send executes the queued writes.
func (b *batch) send() error {
	for _, key := range b.sharedKeys {
		var adds, rems []any
		for m, add := range b.shared[key] {
			if add {
				adds = append(adds, m)
			} else {
				rems = append(rems, m)
			}
		}
		if len(adds) > 0 {
			b.to(key).SAdd(b.ctx, key, adds...)
			b.n++
		}
		if len(rems) > 0 {
			b.to(key).SRem(b.ctx, key, rems...)
			b.n++
		}
		delete(b.shared, key)
	}
	b.sharedKeys = b.sharedKeys[:0]
	if b.n == 0 {
		return nil
	}
	b.p.commands.Add(uint64(b.n))
	var errs [writeConns]error
	var wg sync.WaitGroup
	for i := range b.pipes {
		if b.used[i] == 0 {
			continue
		}
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			if _, err := b.pipes[i].Exec(b.ctx); err != nil && !errors.Is(err, redis.Nil) {
				errs[i] = err
			}
		}(i)
	}
	wg.Wait()
	b.n = 0
	for i := range b.pipes {
		b.pipes[i] = b.rdb.Pipeline()
		b.used[i] = 0
	}
	if err := errors.Join(errs[:]...); err != nil {
		return fmt.Errorf("cache: write batch: %w", err)
	}
	return nil
}

// hwrite sends h to the hash key: HSET of the values, and HDEL of the nulls
// unless fresh says the hash cannot hold them.
func (b *batch) hwrite(key string, h *hashWrite, fresh bool) {
	if len(h.set) > 0 {
		b.to(key).HSet(b.ctx, key, h.set...)
		b.n++
	}
	if len(h.del) > 0 && !fresh {
		b.to(key).HDel(b.ctx, key, h.del...)
		b.n++
	}
}

func (b *batch) del(key string) {
	b.to(key).Del(b.ctx, key)
	b.n++
}
