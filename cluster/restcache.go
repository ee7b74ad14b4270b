package cluster

import (
	"context"
	"sync"
	"time"

	"github.com/megane-go/megane/cache"
)

// restKey names one entity an owner lookup fetched over REST.
type restKey struct {
	kind  cache.Entity
	guild uint64 // 0 for guilds, channels and users: found by id alone
	id    uint64
}

// restCache keeps what the owner lookups' REST calls returned for a while,
// so that fetching one entity again and again (a field the projection does
// not keep, an entity it does not hold) costs one REST call per ttl rather
// than one per fetch. Concurrent lookups of one entity share one call. It
// holds at most size entities; when full, expired ones go first, then
// arbitrary ones. What it returns can be up to ttl old: gateway updates do
// not reach it (the projection is what follows them).
type restCache struct {
	ttl  time.Duration
	size int
	now  func() time.Time

	mu       sync.Mutex
	entries  map[restKey]restEntry
	inflight map[restKey]*restCall
}

type restEntry struct {
	raw     []byte
	expires time.Time
}

type restCall struct {
	done chan struct{}
	raw  []byte
	err  error
}

func newRESTCache(ttl time.Duration, size int) *restCache {
	return &restCache{
		ttl: ttl, size: size, now: time.Now,
		entries: map[restKey]restEntry{}, inflight: map[restKey]*restCall{},
	}
}

// get returns key's entity from the cache, or calls fetch (once for all
// concurrent callers) and keeps what it returned. fresh reports that this
// call's fetch ran, hence that Discord was asked.
func (c *restCache) get(ctx context.Context, key restKey, fetch func(context.Context) (map[restKey][]byte, error)) (raw []byte, fresh bool, err error) {
	c.mu.Lock()
	if e, ok := c.entries[key]; ok {
		if c.now().Before(e.expires) {
			c.mu.Unlock()
			return e.raw, false, nil
		}
		delete(c.entries, key)
	}
	if call, ok := c.inflight[key]; ok {
		c.mu.Unlock()
		select {
		case <-call.done:
			return call.raw, false, call.err
		case <-ctx.Done():
			return nil, false, ctx.Err()
		}
	}
	call := &restCall{done: make(chan struct{})}
	c.inflight[key] = call
	c.mu.Unlock()

	got, err := fetch(ctx)
	c.mu.Lock()
	delete(c.inflight, key)
	if err == nil {
		expires := c.now().Add(c.ttl)
		for k, b := range got {
			c.putLocked(k, restEntry{raw: b, expires: expires})
		}
		call.raw = got[key]
	}
	call.err = err
	c.mu.Unlock()
	close(call.done)
	return call.raw, true, err
}

func (c *restCache) putLocked(k restKey, e restEntry) {
	if _, ok := c.entries[k]; !ok && len(c.entries) >= c.size {
		now := c.now()
		for old, oe := range c.entries {
			if !now.Before(oe.expires) {
				delete(c.entries, old)
			}
		}
		for old := range c.entries {
			if len(c.entries) < c.size {
				break
			}
			delete(c.entries, old)
		}
	}
	c.entries[k] = e
}

// len returns the number of entities kept, expired ones included.
func (c *restCache) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}
