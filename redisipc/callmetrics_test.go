package redisipc

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/keyspace"
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

// TestNodeCountsItsCalls: Call and Gather land in CallMetrics, under the
// op and the kind of target.
func TestNodeCountsItsCalls(t *testing.T) {
	_, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("calls")
	ctx := context.Background()
	a, err := New(ctx, Options{Redis: rdb, Keys: ks, Addr: "cluster:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)
	b, err := New(ctx, Options{Redis: rdb, Keys: ks, Addr: "cluster:1"})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	if _, err := a.Call(ctx, "cluster:1", OpPing, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Call(ctx, "service:none", OpPing, nil); !errors.Is(err, ErrNoResponders) {
		t.Fatalf("call to nobody: %v", err)
	}
	if _, err := a.Gather(ctx, TargetServices, OpPing, nil); !errors.Is(err, ErrNoResponders) {
		t.Fatalf("gather of nobody: %v", err)
	}
	got := map[string]CallMetric{}
	for _, m := range a.CallMetrics() {
		got[m.Op+" "+m.Target] = m
	}
	if m := got[OpPing+" cluster"]; m.Calls != 1 || m.Errors != 0 || m.Seconds <= 0 {
		t.Errorf("ping of cluster:1: %+v", m)
	}
	if m := got[OpPing+" service"]; m.Calls != 1 || m.NoResponders != 1 {
		t.Errorf("ping of service:none: %+v", m)
	}
	if m := got[OpPing+" "+TargetServices]; m.Calls != 1 || m.Errors != 1 {
		t.Errorf("gather of services: %+v (all: %+v)", m, got)
	}
}
