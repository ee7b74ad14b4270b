package identify

import (
	"sync/atomic"
	"time"
)

// WaitStats is what a Limiter counted of its waits since it was created.
type WaitStats struct {
	// Waits counts the buckets taken (each one IDENTIFY).
	Waits uint64 `json:"waits"`
	// Seconds is the total time Wait spent before taking a bucket: the
	// queue in front of this process's identifies.
	Seconds float64 `json:"seconds"`
}

// waitCounters are updated with atomic adds only.
type waitCounters struct {
	n     atomic.Uint64
	nanos atomic.Uint64
}

func (w *waitCounters) add(d time.Duration) {
	w.n.Add(1)
	w.nanos.Add(uint64(max(d, 0)))
}

// WaitStats returns the limiter's wait counters.
func (l *Limiter) WaitStats() WaitStats {
	return WaitStats{Waits: l.waits.n.Load(), Seconds: float64(l.waits.nanos.Load()) / 1e9}
}
