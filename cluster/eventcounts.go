package cluster

import (
	"sync"
	"sync/atomic"
)

// maxEventTypes bounds the dispatch types counted by name; Discord has
// about eighty, and anything past the bound counts as "other", so a
// gateway (or a fake) sending made-up types cannot grow the stats field.
const maxEventTypes = 128

// eventCounts counts the dispatches the cluster received, by type. The
// gateway goroutines only Load and Add once a type was seen.
type eventCounts struct {
	byType sync.Map // string -> *atomic.Uint64
	n      atomic.Int32
	mu     sync.Mutex
}

func (e *eventCounts) add(typ string) {
	if c, ok := e.byType.Load(typ); ok {
		c.(*atomic.Uint64).Add(1)
		return
	}
	e.mu.Lock()
	c, ok := e.byType.Load(typ)
	if !ok {
		if e.n.Load() >= maxEventTypes {
			typ = "other"
			c, ok = e.byType.Load(typ)
		}
		if !ok {
			c = new(atomic.Uint64)
			e.byType.Store(typ, c)
			e.n.Add(1)
		}
	}
	e.mu.Unlock()
	c.(*atomic.Uint64).Add(1)
}

// snapshot returns the counts by type.
func (e *eventCounts) snapshot() map[string]uint64 {
	out := map[string]uint64{}
	e.byType.Range(func(k, v any) bool {
		out[k.(string)] = v.(*atomic.Uint64).Load()
		return true
	})
	return out
}
