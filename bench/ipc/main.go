// Command ipc measures Megane's IPC against a real Redis: the Redis PING
// round trip, and a cluster→service request/response round trip (a service
// copy in its own process), sequentially and with many requests in flight.
// It prints one table with every latency's ratio to PING p50.
//
//	redis-server --port 6399 --save '' --appendonly no --daemonize yes
//	go run ./bench/ipc -redis redis://127.0.0.1:6399/0
//
// With -cluster URL (a redis+cluster:// URL) it measures the same on a
// Redis Cluster in the same run, the samples of both interleaved, and
// prints what the cluster costs against the single server.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/redisconn"
	"github.com/megane-go/megane/redisipc"
	"github.com/megane-go/megane/services"
)

func main() {
	var (
		url      = flag.String("redis", "redis://127.0.0.1:6399/0", "Redis URL")
		cluster  = flag.String("cluster", "", "redis+cluster:// URL of a Redis Cluster to compare with -redis in the same run")
		ns       = flag.String("ns", "bench", "key namespace (purged before and after)")
		samples  = flag.Int("n", 20000, "sequential samples per latency row")
		dur      = flag.Duration("d", 5*time.Second, "duration of each throughput row")
		inflight = flag.String("inflight", "64,256", "requests in flight for the throughput rows")
		payload  = flag.Int("payload", 64, "request payload bytes")
		child    = flag.Bool("child", false, "run as the echo service copy (internal)")
		prof     = flag.String("cpuprofile", "", "write CPU profiles of the throughput rows to this file and <file>.service")
	)
	flag.Parse()
	if *prof != "" {
		path := *prof
		if *child {
			path += ".service"
		}
		f, err := os.Create(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench/ipc:", err)
			os.Exit(1)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "bench/ipc:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	childArgs = os.Args[1:]
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	var err error
	if *child {
		err = runChild(ctx, *url, *ns)
	} else {
		err = run(ctx, *url, *cluster, *ns, *samples, *dur, *inflight, *payload)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench/ipc:", err)
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

// childArgs are the flags the service copy is started with.
var childArgs []string

// echo is the service under test: it answers with the request payload.
type echo struct{}

func (echo) Launch(ctx context.Context, s *services.Service) error { return nil }

func (echo) HandleCommand(ctx context.Context, s *services.Service, cmd services.Command) (any, error) {
	return rawJSON(cmd.Payload), nil
}

type rawJSON []byte

func (r rawJSON) MarshalJSON() ([]byte, error) { return r, nil }

// runChild is the service copy: the echo service and the bare baseline's
// server.
func runChild(ctx context.Context, url, ns string) error {
	rdb, err := redisconn.Open(ctx, url)
	if err != nil {
		return err
	}
	defer rdb.Close()
	ks, err := keyspace.New(ns)
	if err != nil {
		return err
	}
	go func() {
		if err := bareServe(ctx, rdb, ks); err != nil {
			fmt.Fprintln(os.Stderr, "bench/ipc: bare baseline:", err)
		}
	}()
	return services.Run(ctx, services.Options{Name: "echo", Redis: rdb, Keys: ks,
		OnReady: func() { fmt.Println("READY") }}, echo{})
}

// target is one Redis under test with its service copy and callers.
type target struct {
	name             string
	rdb              redis.UniversalClient
	ping, call, bare func() error
	barePiped        func() error
	close            func()
}

// setup starts the service copy on url and returns the calls to measure.
func setup(ctx context.Context, name, url, ns string, body []byte) (*target, error) {
	rdb, err := redisconn.Open(ctx, url)
	if err != nil {
		return nil, err
	}
	t := &target{name: name, rdb: rdb}
	var closers []func()
	t.close = func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	closers = append(closers, func() { _ = rdb.Close() })
	ks, err := keyspace.New(ns)
	if err != nil {
		t.close()
		return nil, err
	}
	purge(ctx, rdb, ks)
	closers = append(closers, func() { purge(context.Background(), rdb, ks) })
	if err := bareSetup(ctx, rdb, ks); err != nil {
		t.close()
		return nil, err
	}
	svc, err := startChild(ctx, url)
	if err != nil {
		t.close()
		return nil, err
	}
	closers = append(closers, func() {
		_ = svc.Process.Signal(syscall.SIGTERM)
		_ = svc.Wait()
	})
	node, err := redisipc.New(ctx, redisipc.Options{Redis: rdb, Keys: ks, Addr: "cluster:0"})
	if err != nil {
		t.close()
		return nil, err
	}
	closers = append(closers, func() { _ = node.Close(context.Background()) })
	t.ping = func() error { return rdb.Ping(ctx).Err() }
	t.call = func() error {
		_, err := node.Call(ctx, "service:echo", "echo", body)
		return err
	}
	seq := newBareSeq(rdb, ks, body)
	t.bare = func() error { return seq.call(ctx) }
	pipe := newBarePipe(ctx, rdb, ks, body)
	t.barePiped = func() error { return pipe.call(ctx) }
	// Warm up connections and code paths.
	for range 2000 {
		for _, f := range []func() error{t.call, t.bare, t.ping} {
			if err := f(); err != nil {
				t.close()
				return nil, fmt.Errorf("%s: warm-up: %w", name, err)
			}
		}
	}
	return t, nil
}

func run(ctx context.Context, url, clusterURL, ns string, samples int, dur time.Duration, inflight string, size int) error {
	body := []byte(`"` + strings.Repeat("x", max(size-2, 0)) + `"`)
	single, err := setup(ctx, "single", url, ns, body)
	if err != nil {
		return err
	}
	defer single.close()
	targets := []*target{single}
	if clusterURL != "" {
		cl, err := setup(ctx, "cluster", clusterURL, ns, body)
		if err != nil {
			return err
		}
		defer cl.close()
		targets = append(targets, cl)
	}

	// PING, call and bare samples alternate (and the targets with them), so
	// all see the same machine load.
	var fs []func() error
	for _, t := range targets {
		fs = append(fs, t.ping, t.call, t.bare)
	}
	l, err := interleaved(samples, fs...)
	if err != nil {
		return err
	}
	fmt.Printf("Megane IPC benchmark — %s, %d-byte payload, GOMAXPROCS=%d, redis %s, load average %s\n",
		time.Now().Format("2006-01-02 15:04"), size, runtimeProcs(), redisVersion(ctx, single.rdb), loadAvg())
	for i, t := range targets {
		ping, rr, br := l[3*i], l[3*i+1], l[3*i+2]
		base := ping.p50
		fmt.Printf("\n%-44s %10s %10s %12s %12s\n", "measurement ("+t.name+")", "p50", "p99", "p50/PING50", "p99/PING50")
		row := func(name string, l lat) {
			fmt.Printf("%-44s %10s %10s %11.2fx %11.2fx\n", name, us(l.p50), us(l.p99),
				float64(l.p50)/float64(base), float64(l.p99)/float64(base))
		}
		row(fmt.Sprintf("Redis PING round trip (sequential, n=%d)", samples), ping)
		row(fmt.Sprintf("cluster→service call (sequential, n=%d)", samples), rr)
		row("bare streams round trip (no framework)", br)
		fmt.Printf("%-44s %10.2fx %10.2fx\n", "call ÷ bare", float64(rr.p50)/float64(br.p50), float64(rr.p99)/float64(br.p99))
	}
	if len(targets) == 2 {
		ratio := func(a, b lat) string {
			return fmt.Sprintf("%10.2fx %10.2fx", float64(b.p50)/float64(a.p50), float64(b.p99)/float64(a.p99))
		}
		fmt.Printf("\n%-44s %10s %10s\n", "Redis Cluster ÷ single redis-server", "p50", "p99")
		fmt.Printf("%-44s %s\n", "PING round trip", ratio(l[0], l[3]))
		fmt.Printf("%-44s %s\n", "cluster→service call", ratio(l[1], l[4]))
		fmt.Printf("%-44s %s\n", "bare streams round trip", ratio(l[2], l[5]))
	}

	for _, t := range targets {
		fmt.Printf("\n%-44s %10s %10s %12s\n", "throughput ("+t.name+")", "req/s", "p50", "p99")
		for _, f := range strings.Split(inflight, ",") {
			k, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || k <= 0 {
				return fmt.Errorf("bad -inflight %q", f)
			}
			rate, l, err := throughput(ctx, k, dur, t.call)
			if err != nil {
				return err
			}
			fmt.Printf("%-44s %10.0f %10s %10s\n", fmt.Sprintf("cluster→service, %d in flight, %v", k, dur), rate, us(l.p50), us(l.p99))
			brate, bl, err := throughput(ctx, k, dur, t.barePiped)
			if err != nil {
				return err
			}
			fmt.Printf("%-44s %10.0f %10s %10s\n", fmt.Sprintf("bare streams, %d in flight, %v", k, dur), brate, us(bl.p50), us(bl.p99))
			fmt.Printf("%-44s %10.2fx\n", "call ÷ bare throughput", rate/brate)
		}
	}
	fmt.Printf("\ntargets: call p50 ≤ 3× PING p50, p99 ≤ 10× PING p50, ≥ 45 000 req/s at 64 in flight\n")
	return nil
}

// startChild starts the service copy on url (the last -redis wins).
func startChild(ctx context.Context, url string) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	args := append(append([]string{"-child"}, childArgs...), "-redis", url)
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	ready := make(chan struct{})
	go func() {
		buf := make([]byte, 64)
		var seen strings.Builder
		for {
			n, err := out.Read(buf)
			seen.Write(buf[:n])
			if strings.Contains(seen.String(), "READY") {
				close(ready)
				_, _ = readAll(out)
				return
			}
			if err != nil {
				return
			}
		}
	}()
	select {
	case <-ready:
		return cmd, nil
	case <-time.After(15 * time.Second):
		_ = cmd.Process.Kill()
		return nil, fmt.Errorf("service copy not ready after 15s")
	}
}

func readAll(r interface{ Read([]byte) (int, error) }) (int, error) {
	buf := make([]byte, 512)
	total := 0
	for {
		n, err := r.Read(buf)
		total += n
		if err != nil {
			return total, err
		}
	}
}

type lat struct{ p50, p99 time.Duration }

func percentiles(d []time.Duration) lat {
	slices.Sort(d)
	return lat{p50: d[len(d)/2], p99: d[len(d)*99/100]}
}

// interleaved runs fs in turn n times and returns each one's percentiles.
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

func us(d time.Duration) string { return fmt.Sprintf("%.1fµs", float64(d.Nanoseconds())/1e3) }
