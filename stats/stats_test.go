package stats

import (
	"context"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/keyspace"
)

func TestPublishWritesFlatHashWithExpiryAndIndex(t *testing.T) {
	m, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("s")
	ctx := context.Background()
	r := NewReporter(rdb, ks, "cluster:3", Options{Interval: time.Second})
	if err := r.Add("guilds", func(context.Context) any { return 42 }); err != nil {
		t.Fatal(err)
	}
	if err := r.Add("cpu_percent", func(context.Context) any { return 0 }); err == nil {
		t.Error("replacing a built-in field succeeded")
	}
	if err := r.Add("broken", func(context.Context) any { panic("boom") }); err != nil {
		t.Fatal(err)
	}
	if err := r.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	key := ks.Stats("cluster:3")
	got := m.HGet(key, "guilds")
	if got != "42" {
		t.Errorf("guilds = %q, want 42", got)
	}
	if v := m.HGet(key, "broken"); v != "error: boom" {
		t.Errorf("broken = %q", v)
	}
	for _, f := range []string{"cpu_percent", "rss_bytes", "heap_bytes", "goroutines", "uptime_seconds", "pid", "updated_at"} {
		if m.HGet(key, f) == "" {
			t.Errorf("field %s missing", f)
		}
	}
	if ttl := m.TTL(key); ttl != 3*time.Second {
		t.Errorf("TTL = %v, want 3s", ttl)
	}
	reports, err := ReadAll(ctx, rdb, ks, time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	if len(reports) != 1 || reports[0].Name != "cluster:3" || reports[0].Fields["guilds"] != "42" {
		t.Fatalf("ReadAll = %+v", reports)
	}
	// An expired hash drops out of ReadAll even while indexed.
	m.FastForward(4 * time.Second)
	reports, err = ReadAll(ctx, rdb, ks, 0)
	if err != nil || len(reports) != 0 {
		t.Fatalf("after expiry ReadAll = %+v, %v", reports, err)
	}
}

func TestCPUIsSinceLastSample(t *testing.T) {
	var c cpuSampler
	if got := c.sample(); got != 0 {
		t.Errorf("first sample = %v, want 0 (no previous sample)", got)
	}
	deadline := time.Now().Add(50 * time.Millisecond)
	x := 0
	for time.Now().Before(deadline) {
		x++
	}
	got := c.sample()
	if got <= 0 || got > 100*float64(2*runtimeCPUs()) {
		t.Errorf("busy sample = %v%%, want within (0, %d]", got, 100*2*runtimeCPUs())
	}
	_ = strconv.Itoa(x)
}

func TestRunStopsWithContext(t *testing.T) {
	_, rdb := testredis.Mini(t)
	r := NewReporter(rdb, keyspace.MustNew("s"), "launcher", Options{Interval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { r.Run(ctx); close(done) }()
	deadline := time.Now().Add(5 * time.Second)
	for {
		reports, _ := ReadAll(context.Background(), rdb, keyspace.MustNew("s"), 0)
		if len(reports) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("Run never published")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not stop")
	}
}

func runtimeCPUs() int { return runtime.NumCPU() }

// The index used to keep every process name that ever reported, forever.
// It now forgets processes silent for IndexTTL and goes with the last one.
func TestIndexForgetsSilentProcesses(t *testing.T) {
	m, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("s")
	ctx := context.Background()
	old := NewReporter(rdb, ks, "cluster:9", Options{Interval: time.Second})
	if err := old.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	if ttl := m.TTL(ks.StatsIndex()); ttl <= 0 || ttl > IndexTTL {
		t.Errorf("index TTL = %v, want (0, %v]", ttl, IndexTTL)
	}
	// Entries are scored by wall-clock time: age cluster:9's by hand.
	rdb.ZAdd(ctx, ks.StatsIndex(), redis.Z{Score: float64(time.Now().Add(-IndexTTL - time.Minute).UnixMilli()), Member: "cluster:9"})
	live := NewReporter(rdb, ks, "cluster:0", Options{Interval: time.Second})
	if err := live.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	if got := rdb.ZRange(ctx, ks.StatsIndex(), 0, -1).Val(); len(got) != 1 || got[0] != "cluster:0" {
		t.Errorf("index = %v, want only cluster:0", got)
	}
	m.FastForward(IndexTTL + time.Second)
	if m.Exists(ks.StatsIndex()) {
		t.Error("the index outlived every reporter")
	}
}
