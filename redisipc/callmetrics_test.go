package redisipc

import (
	"fmt"
	"strconv"
	"testing"
	"time"
)

func TestCallMetrics(t *testing.T) {
	var m callMetrics
	m.observe("guilds", "cluster:1", 2*time.Millisecond, nil)
	m.observe("guilds", "cluster:2", 200*time.Millisecond, fmt.Errorf("x: %w", ErrTimeout))
	m.observe("guilds", "cluster:3", 5*time.Second, fmt.Errorf("x: %w", ErrNoResponders))
	m.observe("count", "service:counter", time.Microsecond, &RemoteError{Message: "no"})
	got := m.snapshot()
	if len(got) != 2 || got[0].Op != "count" || got[1].Op != "guilds" || got[1].Target != KindCluster {
		t.Fatalf("snapshot = %+v", got)
	}
	g := got[1]
	if g.Calls != 3 || g.Errors != 2 || g.Timeouts != 1 || g.NoResponders != 1 {
		t.Errorf("guilds counts %+v", g)
	}
	// Cumulative: 2ms is within 5ms and up; 200ms within 0.5s and up; 5s in none.
	want := []uint64{0, 1, 1, 1, 2, 2}
	for i := range want {
		if g.Buckets[i] != want[i] {
			t.Errorf("buckets %v, want %v", g.Buckets, want)
			break
		}
	}
	if g.Seconds < 5.2 || g.Seconds > 5.21 {
		t.Errorf("seconds %v", g.Seconds)
	}
	if c := got[0]; c.Target != KindService || c.Errors != 1 || c.Buckets[0] != 1 {
		t.Errorf("count %+v", c)
	}
}

func TestCallMetricsBoundTheOps(t *testing.T) {
	var m callMetrics
	for i := range maxCallSeries + 5 {
		m.observe("op"+strconv.Itoa(i), "cluster:0", time.Millisecond, nil)
	}
	got := m.snapshot()
	if len(got) != maxCallSeries+1 {
		t.Fatalf("%d series, want %d", len(got), maxCallSeries+1)
	}
	for _, s := range got {
		if s.Op == "other" && s.Calls != 5 {
			t.Errorf("other has %d calls, want 5", s.Calls)
		}
	}
}
