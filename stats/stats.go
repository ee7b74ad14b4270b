// Package stats collects process statistics automatically and lets user code
// add its own, then publishes them to Redis at an interval, so every
// process's numbers are one HGETALL away (and megane-cli stats shows them
// side by side).
//
// Each process reports a flat hash keyspace.Stats(name) with the built-in
// fields below plus whatever collectors and sources were added; the hash
// expires when its process stops reporting, and keyspace.StatsIndex lists
// the reporters. Every field's value is JSON, so it reads back with its
// type: a number stays a number (an int64 when it was published as an
// integer, a float64 when as a float), a string a string, a map a map. With
// redis-cli a number looks as it always did (42, 12.5) and a string is
// quoted ("host-1"). This package owns the record: read it with ReadAll or
// Read, never by parsing the hash.
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
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"runtime"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/internal/procstat"
	"github.com/megane-go/megane/keyspace"
)

// DefaultInterval is how often a Reporter publishes when Options.Interval is zero.
const DefaultInterval = 10 * time.Second

// Collector returns one user statistic. It is called once per sample and
// must not block for long. Its value is published as JSON and read back
// typed (see the package documentation); an error is published as the
// string "error: <message>", and a value JSON cannot encode as its fmt %v
// text.
type Collector func(ctx context.Context) any

// Source returns several user statistics at once, for code that keeps its
// figures in a map (services.Statser). Like a Collector it is called once
// per sample; fields with a built-in name are ignored, and a field a
// Collector also reports takes the Collector's value.
type Source func(ctx context.Context) map[string]any

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
	sources    []Source
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

// AddSource registers a Source; its fields are published with the
// collectors'.
func (r *Reporter) AddSource(src Source) {
	r.mu.Lock()
	r.sources = append(r.sources, src)
	r.mu.Unlock()
}

var builtin = map[string]bool{
	"cpu_percent": true, "rss_bytes": true, "heap_bytes": true, "goroutines": true,
	"gc_cycles": true, "uptime_seconds": true, "pid": true, "host": true, "updated_at": true,
}

// Sample collects the current statistics, built-in and user ones, without
// publishing them. A collector or source that panics is reported as the
// string "error: …" instead of crashing.
func (r *Reporter) Sample(ctx context.Context) map[string]any {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	out := r.Custom(ctx)
	out["heap_bytes"] = ms.HeapAlloc
	out["goroutines"] = runtime.NumGoroutine()
	out["gc_cycles"] = ms.NumGC
	out["uptime_seconds"] = int64(time.Since(r.started).Seconds())
	out["pid"] = os.Getpid()
	out["host"] = r.host
	out["updated_at"] = time.Now().UnixMilli()
	if rss := procstat.RSSBytes(); rss > 0 {
		out["rss_bytes"] = rss
	}
	r.mu.Lock()
	out["cpu_percent"] = math.Round(r.cpu.sample()*10) / 10
	r.mu.Unlock()
	return out
}

// Custom collects only the user statistics (collectors and sources), as
// Sample would. A service merges them into its IPC "$stats" answer, so
// both ways of asking a process show the same figures.
func (r *Reporter) Custom(ctx context.Context) map[string]any {
	r.mu.Lock()
	collectors := make(map[string]Collector, len(r.collectors))
	for k, c := range r.collectors {
		collectors[k] = c
	}
	sources := slices.Clone(r.sources)
	r.mu.Unlock()
	out := map[string]any{}
	for _, src := range sources {
		for k, v := range safeSource(ctx, src) {
			if !builtin[k] && k != "" {
				out[k] = v
			}
		}
	}
	for name, c := range collectors {
		out[name] = safeCollect(ctx, c)
	}
	return out
}

func safeCollect(ctx context.Context, c Collector) (v any) {
	defer func() {
		if p := recover(); p != nil {
			v = fmt.Sprintf("error: %v", p)
		}
	}()
	return c(ctx)
}

func safeSource(ctx context.Context, src Source) (m map[string]any) {
	defer func() {
		if p := recover(); p != nil {
			m = map[string]any{"source_error": fmt.Sprintf("error: %v", p)}
		}
	}()
	return src(ctx)
}

// IndexTTL is how long the index (keyspace.StatsIndex) keeps a process
// that stopped reporting; its hash expired long before.
const IndexTTL = 24 * time.Hour

// Publish samples and writes the hash, its expiry and the index entry in one
// pipeline.
func (r *Reporter) Publish(ctx context.Context) error {
	sample := r.Sample(ctx)
	fields := make(map[string]string, len(sample))
	for k, v := range sample {
		fields[k] = encodeValue(v)
	}
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
	// Name is the process: "launcher", "cluster:<id>" or
	// "service:<name>:<copy>".
	Name string `json:"name"`
	// Fields holds every field with its type: int64 or float64 for
	// numbers (as published: an integer or a float), string, bool, nil,
	// []any and map[string]any (whose numbers follow the same rule).
	Fields map[string]any `json:"fields"`
}

// Role is the kind of process the report comes from: "launcher",
// "cluster" or "service".
func (r Report) Role() string {
	role, _, _ := strings.Cut(r.Name, ":")
	return role
}

// Int returns the field name as an int64, and whether it is a number. A
// float is truncated.
func (r Report) Int(name string) (int64, bool) {
	switch v := r.Fields[name].(type) {
	case int64:
		return v, true
	case float64:
		return int64(v), true
	}
	return 0, false
}

// Float returns the field name as a float64, and whether it is a number.
func (r Report) Float(name string) (float64, bool) {
	switch v := r.Fields[name].(type) {
	case int64:
		return float64(v), true
	case float64:
		return v, true
	}
	return 0, false
}

// Text returns the field name as text: a string as it is, anything else
// as JSON, and "" when the field is absent.
func (r Report) Text(name string) string {
	v, ok := r.Fields[name]
	if !ok {
		return ""
	}
	if s, ok := v.(string); ok {
		return s
	}
	return encodeValue(v)
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
			out = append(out, decodeReport(n, f))
		}
	}
	return out, nil
}

// ErrNotFound means the process has no live statistics: it never
// reported, or its hash expired.
var ErrNotFound = errors.New("stats: no statistics")

// Read returns the report of one process ("cluster:0").
func Read(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace, name string) (Report, error) {
	f, err := rdb.HGetAll(ctx, ks.Stats(name)).Result()
	if err != nil {
		return Report{}, fmt.Errorf("stats: read %s: %w", name, err)
	}
	if len(f) == 0 {
		return Report{}, fmt.Errorf("%w for %s", ErrNotFound, name)
	}
	return decodeReport(name, f), nil
}

func decodeReport(name string, hash map[string]string) Report {
	r := Report{Name: name, Fields: make(map[string]any, len(hash))}
	for k, v := range hash {
		r.Fields[k] = decodeValue(v)
	}
	return r
}

// encodeValue is how a field is stored: JSON, with a float always
// written as one (2.0, not 2) so that it reads back as a float64.
func encodeValue(v any) string {
	switch x := v.(type) {
	case nil:
		return "null"
	case string:
		b, _ := json.Marshal(x)
		return string(b)
	case error:
		b, _ := json.Marshal("error: " + x.Error())
		return string(b)
	case float32:
		return encodeFloat(float64(x))
	case float64:
		return encodeFloat(x)
	}
	b, err := json.Marshal(v)
	if err != nil {
		b, _ = json.Marshal(fmt.Sprint(v))
	}
	return string(b)
}

func encodeFloat(f float64) string {
	if math.IsNaN(f) || math.IsInf(f, 0) {
		b, _ := json.Marshal(strconv.FormatFloat(f, 'g', -1, 64)) // JSON has no NaN
		return string(b)
	}
	s := strconv.FormatFloat(f, 'g', -1, 64)
	if !strings.ContainsAny(s, ".eE") {
		s += ".0"
	}
	return s
}

// decodeValue reverses encodeValue. Text that is not JSON (written by
// something else) is returned as a string.
func decodeValue(s string) any {
	d := json.NewDecoder(strings.NewReader(s))
	d.UseNumber()
	var v any
	if err := d.Decode(&v); err != nil || d.More() {
		return s
	}
	return typedNumbers(v)
}

// typedNumbers turns json.Numbers into int64 (integers) or float64.
func typedNumbers(v any) any {
	switch x := v.(type) {
	case json.Number:
		if !strings.ContainsAny(string(x), ".eE") {
			if n, err := x.Int64(); err == nil {
				return n
			}
		}
		f, _ := x.Float64()
		return f
	case []any:
		for i := range x {
			x[i] = typedNumbers(x[i])
		}
	case map[string]any:
		for k := range x {
			x[k] = typedNumbers(x[k])
		}
	}
	return v
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
