package stats

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/internal/testwait"
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
	if v := m.HGet(key, "broken"); v != `"error: boom"` {
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
	if len(reports) != 1 || reports[0].Name != "cluster:3" || reports[0].Fields["guilds"] != int64(42) {
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
	testwait.For(t, 5*time.Second, "Run's first report", func() bool {
		reports, _ := ReadAll(context.Background(), rdb, keyspace.MustNew("s"), 0)
		return len(reports) == 1
	})
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

// Values used to be flattened to their %v text, so a reader could not tell
// the number 42 from the string "42", and a Statser's map never reached the
// hash. Every value now reads back with its type, sources included.
func TestValuesKeepTheirTypes(t *testing.T) {
	m, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("s")
	ctx := context.Background()
	r := NewReporter(rdb, ks, "service:x:0", Options{Interval: time.Second})
	add := func(name string, v any) {
		t.Helper()
		if err := r.Add(name, func(context.Context) any { return v }); err != nil {
			t.Fatal(err)
		}
	}
	add("int", 42)
	add("uint64", uint64(1)<<40)
	add("float", 2.0)
	add("half", 0.5)
	add("digits", "42")
	add("flag", true)
	add("nothing", nil)
	add("failed", errors.New("no luck"))
	add("nested", map[string]any{"a": 1, "b": []any{1.5, "x"}})
	add("unencodable", make(chan int))
	r.AddSource(func(context.Context) map[string]any {
		return map[string]any{"from_source": 7, "int": "the collector wins", "pid": "built-ins win"}
	})
	r.AddSource(func(context.Context) map[string]any { panic("boom") })
	if err := r.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	// redis-cli sees numbers as before, strings quoted.
	key := ks.Stats("service:x:0")
	for f, want := range map[string]string{"int": "42", "float": "2.0", "digits": `"42"`, "host": strconv.Quote(r.host)} {
		if got := m.HGet(key, f); got != want {
			t.Errorf("HGET %s = %s, want %s", f, got, want)
		}
	}
	rep, err := Read(ctx, rdb, ks, "service:x:0")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		field string
		want  any
	}{
		{"int", int64(42)},
		{"uint64", int64(1) << 40},
		{"float", 2.0},
		{"half", 0.5},
		{"digits", "42"},
		{"flag", true},
		{"nothing", nil},
		{"failed", "error: no luck"},
		{"from_source", int64(7)},
		{"source_error", "error: boom"},
		{"pid", int64(os.Getpid())},
		{"host", r.host},
	}
	for _, tt := range tests {
		if got, ok := rep.Fields[tt.field]; !ok || got != tt.want {
			t.Errorf("%s = %#v, want %#v", tt.field, got, tt.want)
		}
	}
	if got, _ := json.Marshal(rep.Fields["nested"]); string(got) != `{"a":1,"b":[1.5,"x"]}` {
		t.Errorf("nested = %s", got)
	}
	if s, ok := rep.Fields["unencodable"].(string); !ok || !strings.HasPrefix(s, "0x") {
		t.Errorf("unencodable = %#v, want its %%v text", rep.Fields["unencodable"])
	}
	for _, f := range []string{"cpu_percent", "rss_bytes", "heap_bytes", "goroutines", "uptime_seconds", "updated_at"} {
		if _, ok := rep.Float(f); !ok {
			t.Errorf("%s = %#v, want a number", f, rep.Fields[f])
		}
	}
	if _, ok := rep.Fields["cpu_percent"].(float64); !ok {
		t.Errorf("cpu_percent = %#v, want a float64 even when whole", rep.Fields["cpu_percent"])
	}
	if n, ok := rep.Int("int"); !ok || n != 42 {
		t.Errorf("Int(int) = %d, %v", n, ok)
	}
	if rep.Text("digits") != "42" || rep.Text("half") != "0.5" || rep.Text("absent") != "" || rep.Role() != "service" {
		t.Errorf("Text/Role: %q %q %q %q", rep.Text("digits"), rep.Text("half"), rep.Text("absent"), rep.Role())
	}
	if _, err := Read(ctx, rdb, ks, "cluster:404"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Read of a silent process = %v, want ErrNotFound", err)
	}
}

// A value some other writer left (or an older version's %v text) reads
// back as the string it is.
func TestDecodeValueFallsBackToText(t *testing.T) {
	for in, want := range map[string]any{"myhost": "myhost", "error: boom": "error: boom", "42 x": "42 x",
		"12.5": 12.5, "-3": int64(-3), `"q"`: "q", "1e3": 1000.0, "99999999999999999999": 1e20} {
		if got := decodeValue(in); got != want {
			t.Errorf("decodeValue(%q) = %#v, want %#v", in, got, want)
		}
	}
}

func TestReadBotGroupsByRole(t *testing.T) {
	_, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("s")
	ctx := context.Background()
	for name, guilds := range map[string]int{"cluster:10": 5, "cluster:2": 7, "cluster:0": 1, "launcher": -1,
		"service:twitch:1": -1, "service:twitch:0": -1, "service:x:0": -1, "mine": -1} {
		r := NewReporter(rdb, ks, name, Options{Interval: time.Minute})
		if guilds >= 0 {
			_ = r.Add("guilds", func(context.Context) any { return guilds })
		}
		if err := r.Publish(ctx); err != nil {
			t.Fatal(err)
		}
	}
	b, err := ReadBot(ctx, rdb, ks, 0)
	if err != nil {
		t.Fatal(err)
	}
	names := func(rs []Report) (out []string) {
		for _, r := range rs {
			out = append(out, r.Name)
		}
		return out
	}
	if b.Launcher == nil || b.Launcher.Name != "launcher" {
		t.Errorf("Launcher = %+v", b.Launcher)
	}
	if got := strings.Join(names(b.Clusters), " "); got != "cluster:0 cluster:2 cluster:10" {
		t.Errorf("Clusters = %s", got)
	}
	if got := strings.Join(names(b.Services["twitch"]), " "); got != "service:twitch:0 service:twitch:1" || len(b.Services) != 2 {
		t.Errorf("Services = %v", b.Services)
	}
	if got := strings.Join(names(b.Others), " "); got != "mine" {
		t.Errorf("Others = %s", got)
	}
	if got := Sum(b.Clusters, "guilds"); got != 13 {
		t.Errorf("Sum(guilds) = %v, want 13", got)
	}
}
