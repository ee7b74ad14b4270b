package redisipc

import (
	"errors"
	"sort"
	"sync"
	"sync/atomic"
	"time"
)

// CallBuckets are the upper bounds, in seconds, of the latency histogram
// CallMetric keeps per op and target kind: few, so a process publishes a
// small stats field, and wide, from a same-host round trip to a call that
// runs into its deadline. A call slower than the last bound counts only in
// the total.
var CallBuckets = []float64{0.001, 0.005, 0.025, 0.1, 0.5, 2.5}

// maxCallSeries bounds the (op, target kind) pairs a node tracks; calls of
// any further pair are counted under op "other", so a caller that makes up
// op names cannot grow the published field without bound.
const maxCallSeries = 64

// CallMetric is what a node counted of its outgoing calls (Node.Call, and
// Node.Gather and Node.Eval, which go to many nodes at once) of one op to
// one kind of target, since the node started.
type CallMetric struct {
	// Op is the called op ("$stats", "guilds", …), or "other" once the
	// node tracks maxCallSeries pairs.
	Op string `json:"op"`
	// Target is the kind of the called address (launcher, cluster,
	// service, cli) or, for a gather, its target (clusters, services,
	// all).
	Target string `json:"target"`
	// Calls counts the calls made, Errors those that failed (the target's
	// handler returned an error, no responder, timeout, …); Timeouts and
	// NoResponders are among Errors.
	Calls        uint64 `json:"calls"`
	Errors       uint64 `json:"errors"`
	Timeouts     uint64 `json:"timeouts"`
	NoResponders uint64 `json:"no_responders"`
	// Seconds is the calls' total latency.
	Seconds float64 `json:"seconds"`
	// Buckets[i] counts the calls that took at most CallBuckets[i]
	// (cumulative, as in a Prometheus histogram).
	Buckets []uint64 `json:"buckets"`
}

// callSeries is one (op, target kind) pair's counters; it is updated with
// atomic adds only.
type callSeries struct {
	calls, errors, timeouts, noResponders atomic.Uint64
	nanos                                 atomic.Uint64
	buckets                               [6]atomic.Uint64 // len(CallBuckets)
}

type callKey struct{ op, target string }

// callMetrics holds a node's call series.
type callMetrics struct {
	series sync.Map // callKey -> *callSeries
	count  atomic.Int32
	mu     sync.Mutex // serializes creating a series
}

// observe counts one call of op to address to that took d and ended with err.
func (m *callMetrics) observe(op, to string, d time.Duration, err error) {
	s := m.get(callKey{op, kindOf(to)})
	s.calls.Add(1)
	s.nanos.Add(uint64(max(d, 0)))
	if err != nil {
		s.errors.Add(1)
		switch {
		case errors.Is(err, ErrTimeout):
			s.timeouts.Add(1)
		case errors.Is(err, ErrNoResponders):
			s.noResponders.Add(1)
		}
	}
	sec := d.Seconds()
	for i, b := range CallBuckets {
		if sec <= b {
			s.buckets[i].Add(1)
		}
	}
}

func (m *callMetrics) get(k callKey) *callSeries {
	if v, ok := m.series.Load(k); ok {
		return v.(*callSeries)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if v, ok := m.series.Load(k); ok {
		return v.(*callSeries)
	}
	if m.count.Load() >= maxCallSeries {
		k.op = "other"
		if v, ok := m.series.Load(k); ok {
			return v.(*callSeries)
		}
	}
	s := &callSeries{}
	m.series.Store(k, s)
	m.count.Add(1)
	return s
}

// snapshot returns every series, sorted by op and target.
func (m *callMetrics) snapshot() []CallMetric {
	var out []CallMetric
	m.series.Range(func(key, value any) bool {
		k, s := key.(callKey), value.(*callSeries)
		cm := CallMetric{Op: k.op, Target: k.target, Calls: s.calls.Load(), Errors: s.errors.Load(),
			Timeouts: s.timeouts.Load(), NoResponders: s.noResponders.Load(),
			Seconds: float64(s.nanos.Load()) / 1e9, Buckets: make([]uint64, len(CallBuckets))}
		for i := range cm.Buckets {
			cm.Buckets[i] = s.buckets[i].Load()
		}
		out = append(out, cm)
		return true
	})
	sort.Slice(out, func(i, j int) bool {
		if out[i].Op != out[j].Op {
			return out[i].Op < out[j].Op
		}
		return out[i].Target < out[j].Target
	})
	return out
}

// CallMetrics returns what the node counted of its outgoing calls, one
// entry per op and target kind. Processes publish it as the stats field
// CallMetricsField, which package monitor exports as Prometheus metrics.
func (n *Node) CallMetrics() []CallMetric { return n.calls.snapshot() }

// CallMetricsField is the name of the stats field a process publishes its
// CallMetrics under.
const CallMetricsField = "ipc_calls"
