// Package stats collects process statistics automatically and lets user code
// add its own, then publishes them to Redis at an interval, so every
// process's numbers are one HGETALL away (and megane-cli stats shows them
// side by side).
//
// Each process reports a flat hash keyspace.Stats(name) with the built-in
// fields below plus whatever collectors were added; the hash expires when its
// process stops reporting, and keyspace.StatsIndex lists the reporters.
//
//	cpu_percent    CPU used since the previous sample (user+system), in % of one core
//	rss_bytes      resident memory
//	heap_bytes     Go heap in use
//	goroutines     goroutine count
//	gc_cycles      completed GC cycles
//	uptime_seconds time since the reporter started
//	pid, host      where the process runs
//	updated_at     unix ms of the sample
package stats

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"sort"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
)

// DefaultInterval is how often a Reporter publishes when Options.Interval is zero.
const DefaultInterval = 10 * time.Second

// Collector returns one user statistic. It is called once per sample and
// must not block for long; its value is stored with fmt's %v formatting.
type Collector func(ctx context.Context) any

// Options configures a Reporter.
type Options struct {
	// Interval between samples. Default DefaultInterval. The hash lives
	// three intervals after the last sample.
	Interval time.Duration
	// Logger receives publish errors. Default: discard.
	Logger *slog.Logger
}

// Reporter samples this process and publishes the result.
type Reporter struct {
	rdb      redis.UniversalClient
	ks       keyspace.Keyspace
	name     string
	interval time.Duration
	log      *slog.Logger
	started  time.Time
	host     string

	mu         sync.Mutex
	collectors map[string]Collector
	cpu        cpuSampler
}

// NewReporter returns a reporter for the process called name ("launcher",
// "cluster:3", "service:x:0").
func NewReporter(rdb redis.UniversalClient, ks keyspace.Keyspace, name string, opts Options) *Reporter {
	if opts.Interval <= 0 {
		opts.Interval = DefaultInterval
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	host, _ := os.Hostname()
	r := &Reporter{
		rdb: rdb, ks: ks, name: name, interval: opts.Interval, log: opts.Logger,
		started: time.Now(), host: host, collectors: map[string]Collector{},
	}
	r.cpu.sample()
	return r
}

// Add registers (or replaces) a user statistic. Names of built-in fields
// cannot be replaced.
func (r *Reporter) Add(name string, c Collector) error {
	if builtin[name] || name == "" {
		return fmt.Errorf("stats: %q is a built-in field", name)
	}
	r.mu.Lock()
	r.collectors[name] = c
	r.mu.Unlock()
	return nil
}

var builtin = map[string]bool{
	"cpu_percent": true, "rss_bytes": true, "heap_bytes": true, "goroutines": true,
	"gc_cycles": true, "uptime_seconds": true, "pid": true, "host": true, "updated_at": true,
}

// Sample collects the current statistics without publishing them. A
// collector that panics is reported as "error: …" instead of crashing.
func (r *Reporter) Sample(ctx context.Context) map[string]string {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	out := map[string]string{
		"heap_bytes":     strconv.FormatUint(ms.HeapAlloc, 10),
		"goroutines":     strconv.Itoa(runtime.NumGoroutine()),
		"gc_cycles":      strconv.FormatUint(uint64(ms.NumGC), 10),
		"uptime_seconds": strconv.FormatInt(int64(time.Since(r.started).Seconds()), 10),
		"pid":            strconv.Itoa(os.Getpid()),
		"host":           r.host,
		"updated_at":     strconv.FormatInt(time.Now().UnixMilli(), 10),
	}
	if rss := rssBytes(); rss > 0 {
		out["rss_bytes"] = strconv.FormatUint(rss, 10)
	}
	r.mu.Lock()
	out["cpu_percent"] = strconv.FormatFloat(r.cpu.sample(), 'f', 1, 64)
	collectors := make(map[string]Collector, len(r.collectors))
	for k, c := range r.collectors {
		collectors[k] = c
	}
	r.mu.Unlock()
	for name, c := range collectors {
		out[name] = safeCollect(ctx, c)
	}
	return out
}

func safeCollect(ctx context.Context, c Collector) (s string) {
	defer func() {
		if p := recover(); p != nil {
			s = fmt.Sprintf("error: %v", p)
		}
	}()
	return fmt.Sprint(c(ctx))
}

// IndexTTL is how long the index (keyspace.StatsIndex) keeps a process
// that stopped reporting; its hash expired long before.
const IndexTTL = 24 * time.Hour

// Publish samples and writes the hash, its expiry and the index entry in one
// pipeline.
func (r *Reporter) Publish(ctx context.Context) error {
	fields := r.Sample(ctx)
	key := r.ks.Stats(r.name)
	now := time.Now()
	pipe := r.rdb.Pipeline()
	pipe.Del(ctx, key) // a collector that was removed must not linger
	pipe.HSet(ctx, key, fields)
	pipe.PExpire(ctx, key, 3*r.interval)
	pipe.ZAdd(ctx, r.ks.StatsIndex(), redis.Z{Score: float64(now.UnixMilli()), Member: r.name})
	// The index forgets processes silent for a day, and goes with the last
	// reporter: nothing else removes its entries.
	pipe.ZRemRangeByScore(ctx, r.ks.StatsIndex(), "-inf", "("+strconv.FormatInt(now.Add(-IndexTTL).UnixMilli(), 10))
	pipe.PExpire(ctx, r.ks.StatsIndex(), IndexTTL)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("stats: publish %s: %w", r.name, err)
	}
	return nil
}

// Run publishes every interval until ctx ends. Errors are logged, not fatal:
// statistics must never take a process down.
func (r *Reporter) Run(ctx context.Context) {
	t := time.NewTicker(r.interval)
	defer t.Stop()
	for {
		if err := r.Publish(ctx); err != nil && ctx.Err() == nil {
			r.log.Warn("stats: publish failed", slog.Any("error", err))
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Report is one process's published statistics.
type Report struct {
	Name   string            `json:"name"`
	Fields map[string]string `json:"fields"`
}

// ReadAll returns the reports of every process that reported within maxAge
// (all indexed ones when maxAge is zero), sorted by name. Index entries of
// processes whose hash has expired are skipped.
func ReadAll(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace, maxAge time.Duration) ([]Report, error) {
	min := "-inf"
	if maxAge > 0 {
		min = strconv.FormatInt(time.Now().Add(-maxAge).UnixMilli(), 10)
	}
	names, err := rdb.ZRangeByScore(ctx, ks.StatsIndex(), &redis.ZRangeBy{Min: min, Max: "+inf"}).Result()
	if err != nil {
		return nil, fmt.Errorf("stats: index: %w", err)
	}
	sort.Strings(names)
	pipe := rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(names))
	for i, n := range names {
		cmds[i] = pipe.HGetAll(ctx, ks.Stats(n))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("stats: read: %w", err)
	}
	var out []Report
	for i, n := range names {
		if f := cmds[i].Val(); len(f) > 0 {
			out = append(out, Report{Name: n, Fields: f})
		}
	}
	return out, nil
}

// cpuSampler turns cumulative CPU time into usage since the previous
// sample, which is what an operator wants to see (the cumulative figure
// Megane reported only ever grows).
type cpuSampler struct {
	lastCPU  time.Duration
	lastWall time.Time
}

func (c *cpuSampler) sample() float64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	cpu := time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
	now := time.Now()
	var pct float64
	if !c.lastWall.IsZero() {
		if wall := now.Sub(c.lastWall); wall > 0 {
			pct = 100 * float64(cpu-c.lastCPU) / float64(wall)
		}
	}
	c.lastCPU, c.lastWall = cpu, now
	return pct
}

// rssBytes reads the resident set size from /proc (Linux); 0 elsewhere.
func rssBytes() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, resident uint64
	if _, err := fmt.Sscan(string(b), &size, &resident); err != nil {
		return 0
	}
	return resident * uint64(os.Getpagesize())
}
