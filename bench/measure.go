package main

import (
	"context"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
)

// lat is a latency distribution's median and 99th percentile.
type lat struct{ p50, p99 time.Duration }

func (l lat) us50() float64 { return float64(l.p50.Nanoseconds()) / 1e3 }
func (l lat) us99() float64 { return float64(l.p99.Nanoseconds()) / 1e3 }

func percentiles(d []time.Duration) lat {
	if len(d) == 0 {
		return lat{}
	}
	slices.Sort(d)
	return lat{p50: d[len(d)/2], p99: d[len(d)*99/100]}
}

// interleaved runs fs in turn n times and returns each one's percentiles:
// on a shared machine adjacent samples see the same load.
func interleaved(n int, fs ...func() error) ([]lat, error) {
	d := make([][]time.Duration, len(fs))
	for j := range fs {
		d[j] = make([]time.Duration, n)
	}
	for i := range n {
		for j, f := range fs {
			t := time.Now()
			if err := f(); err != nil {
				return nil, err
			}
			d[j][i] = time.Since(t)
		}
	}
	out := make([]lat, len(fs))
	for j := range fs {
		out[j] = percentiles(d[j])
	}
	return out, nil
}

// throughput runs f from k goroutines for dur and returns calls per
// second and their latencies.
func throughput(ctx context.Context, k int, dur time.Duration, f func() error) (float64, lat, error) {
	var (
		done   atomic.Int64
		mu     sync.Mutex
		all    []time.Duration
		first  error
		wg     sync.WaitGroup
		finish = time.Now().Add(dur)
	)
	start := time.Now()
	for range k {
		wg.Add(1)
		go func() {
			defer wg.Done()
			local := make([]time.Duration, 0, 4096)
			for time.Now().Before(finish) && ctx.Err() == nil {
				t := time.Now()
				if err := f(); err != nil {
					mu.Lock()
					first = err
					mu.Unlock()
					return
				}
				local = append(local, time.Since(t))
				done.Add(1)
			}
			mu.Lock()
			all = append(all, local...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if first != nil {
		return 0, lat{}, first
	}
	return float64(done.Load()) / time.Since(start).Seconds(), percentiles(all), nil
}

// median of xs (xs is sorted in place).
func median(xs []float64) float64 {
	if len(xs) == 0 {
		return 0
	}
	slices.Sort(xs)
	return xs[len(xs)/2]
}

// loadAvg is the 1-minute load average; a busy machine inflates every
// latency, so the report records it.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

// procMem is a process's resident memory in KiB: RSS (VmRSS), its
// anonymous part (RssAnon: heap, stacks; the file part is the binary's
// pages), and USS (its private pages, which exclude pages shared with
// other processes, such as those of the same binary).
type procMem struct{ rss, anon, uss int }

// memOf reads pid's memory from /proc.
func memOf(pid int) procMem {
	var m procMem
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
				m.rss, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			}
			if v, ok := strings.CutPrefix(line, "RssAnon:"); ok {
				m.anon, _ = strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			}
		}
	}
	if b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/smaps_rollup"); err == nil {
		for line := range strings.SplitSeq(string(b), "\n") {
			for _, p := range []string{"Private_Clean:", "Private_Dirty:"} {
				if v, ok := strings.CutPrefix(line, p); ok {
					n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
					m.uss += n
				}
			}
		}
	}
	return m
}

func mib(kib int) float64 { return float64(kib) / 1024 }

// purge deletes the namespace's keys; SCAN is fine in a tool.
func purge(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace) {
	purgePrefix(ctx, rdb, ks.Base())
}

func purgePrefix(ctx context.Context, rdb redis.UniversalClient, prefix string) {
	iter := rdb.Scan(ctx, 0, prefix+"*", 5000).Iterator()
	var batch []string
	flush := func() {
		pipe := rdb.Pipeline()
		for _, k := range batch {
			pipe.Unlink(ctx, k)
		}
		_, _ = pipe.Exec(ctx)
		batch = batch[:0]
	}
	for iter.Next(ctx) {
		if batch = append(batch, iter.Val()); len(batch) == 1000 {
			flush()
		}
	}
	flush()
}

// keysMemory sums MEMORY USAGE over every key under prefix, and counts
// them.
func keysMemory(ctx context.Context, rdb redis.UniversalClient, prefix string) (bytes int64, keys int, err error) {
	iter := rdb.Scan(ctx, 0, prefix+"*", 5000).Iterator()
	var batch []string
	flush := func() error {
		pipe := rdb.Pipeline()
		cmds := make([]*redis.IntCmd, len(batch))
		for i, k := range batch {
			cmds[i] = pipe.MemoryUsage(ctx, k)
		}
		if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
			return fmt.Errorf("MEMORY USAGE: %w", err)
		}
		for _, c := range cmds {
			bytes += c.Val()
		}
		keys += len(batch)
		batch = batch[:0]
		return nil
	}
	for iter.Next(ctx) {
		if batch = append(batch, iter.Val()); len(batch) == 1000 {
			if err := flush(); err != nil {
				return 0, 0, err
			}
		}
	}
	if err := iter.Err(); err != nil {
		return 0, 0, fmt.Errorf("SCAN: %w", err)
	}
	return bytes, keys, flush()
}

// progress prints a progress line on stderr.
func progress(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench: "+format+"\n", args...)
}
