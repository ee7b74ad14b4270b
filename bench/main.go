// Command bench runs every benchmark of Megane and prints one table: each
// figure with its median, its p99 when it is a latency, the baseline it is
// compared with (measured in the same run, samples interleaved where it
// matters, because the machine is shared), the ratio, the target and
// whether the target is met.
//
//	go run ./bench                  # every row (a few minutes on 2 cores)
//	go run ./bench -only ipc,events # some rows
//	go run ./bench -json            # the report as JSON
//
// It starts its own redis-server (from PATH, on a free loopback port, no
// persistence; stopped at exit and on Ctrl-C) and the in-repo fake Discord
// (package discordtest). Cluster, service and launcher processes are this
// binary run again (MEGANE_ROLE, BENCH_ROLE), built without the race
// detector. Progress goes to stderr, the table to stdout.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/redisconn"
)

// config holds the flags: which rows run and their sizes.
type config struct {
	only, skip []string
	json       bool
	redisURL   string

	ipcSamples  int
	ipcDuration time.Duration
	inflight    int

	cacheRuns         int
	cacheIngestGuilds int
	cacheGuilds       int
	cacheMembers      int
	reads             int

	eventsShards int
	eventsN      int
	eventsRounds int

	fleetShards   []int
	fleetWindow   time.Duration
	fleetClusters []int

	coldRuns   int
	restarts   int
	idle       time.Duration
	broadcasts int
	bcClusters int

	cpuprofile   string
	benchProfile string
}

// env is what every row gets: the context, the Redis and the flags.
type env struct {
	ctx  context.Context
	url  string
	rdb  redis.UniversalClient
	cfg  config
	log  *slog.Logger
	figs []Figure
	note []string
}

func (e *env) add(f Figure)             { e.figs = append(e.figs, f) }
func (e *env) notef(f string, a ...any) { e.note = append(e.note, fmt.Sprintf(f, a...)) }

// row is one -only name and the function that measures it.
type row struct {
	name string
	what string
	run  func(e *env) error
}

var rows = []row{
	{"ipc", "Redis PING, cluster→service call and the bare streams round trip, sequential and 64 in flight", runIPC},
	{"broadcast", "Gather and Eval to every cluster process until all answered, against PING", runBroadcast},
	{"cache", "projection ingest against raw pipelined HSET; Redis bytes per guild and member; Reader.Guild against PING", runCache},
	{"events", "gateway events per second into one cluster process with the projection on, against disgo decoding only", runEvents},
	{"launcher", "cold start of 4 clusters × 4 shards, restart of one cluster", runLauncher},
	{"memory", "idle RSS and USS of a cluster with 16 shards, a service copy and the launcher", runMemory},
	{"fleet", "time to all-ready, RSS, goroutines and Redis records per shard at 64, 256 and 1,024 shards", runFleet},
}

func main() {
	if role := os.Getenv("BENCH_ROLE"); role != "" || os.Getenv("MEGANE_ROLE") != "" {
		if err := runChild(role); err != nil {
			fmt.Fprintln(os.Stderr, "bench child:", err)
			os.Exit(1)
		}
		return
	}
	var c config
	var only, skip, fleetShards, fleetClusters string
	flag.StringVar(&only, "only", "", "comma-separated rows to run (default all): "+rowNames())
	flag.StringVar(&skip, "skip", "", "comma-separated rows to leave out")
	flag.BoolVar(&c.json, "json", false, "print the report as JSON instead of the table")
	flag.StringVar(&c.redisURL, "redis", "", "use this Redis instead of starting a redis-server (a throwaway one: the bench writes and deletes keys)")
	flag.IntVar(&c.ipcSamples, "n", 10000, "ipc, broadcast: sequential samples per latency")
	flag.DurationVar(&c.ipcDuration, "d", 2*time.Second, "ipc: duration of each throughput sample")
	flag.IntVar(&c.inflight, "inflight", 64, "ipc: requests in flight for the throughput figures")
	flag.IntVar(&c.cacheRuns, "cache-runs", 3, "cache: paired ingest runs (projection and baseline)")
	flag.IntVar(&c.cacheIngestGuilds, "cache-ingest-guilds", 1000, "cache: guilds per ingest run")
	flag.IntVar(&c.cacheGuilds, "cache-guilds", 5000, "cache: guilds projected for the size figures")
	flag.IntVar(&c.cacheMembers, "cache-members", 100, "cache: members per guild")
	flag.IntVar(&c.reads, "reads", 10000, "cache: sequential Reader.Guild samples")
	flag.IntVar(&c.eventsShards, "events-shards", 4, "events: shards of the cluster process")
	flag.IntVar(&c.eventsN, "events-n", 60000, "events: events per sample, spread over the shards")
	flag.IntVar(&c.eventsRounds, "events-rounds", 3, "events: samples of each side, interleaved")
	flag.StringVar(&fleetShards, "fleet-shards", "64,256,1024", "fleet: shard counts")
	flag.StringVar(&fleetClusters, "fleet-clusters", "4,8,16", "fleet: cluster processes for each shard count")
	flag.DurationVar(&c.fleetWindow, "fleet-window", 100*time.Millisecond, "fleet: the fake's identify window (Discord's is 5s)")
	flag.IntVar(&c.coldRuns, "cold-runs", 3, "launcher: cold starts measured")
	flag.IntVar(&c.restarts, "restarts", 4, "launcher: single-cluster restarts measured")
	flag.DurationVar(&c.idle, "idle", 5*time.Second, "memory: how long processes idle before their memory is read")
	flag.IntVar(&c.broadcasts, "broadcasts", 2000, "broadcast: sequential Gather and Eval samples")
	flag.IntVar(&c.bcClusters, "broadcast-clusters", 8, "broadcast: cluster processes")
	flag.StringVar(&c.cpuprofile, "cpuprofile", "", "events: keep the cluster process's CPU profile in this file")
	flag.StringVar(&c.benchProfile, "benchprofile", "", "write a CPU profile of the bench process itself (the cache row's projector runs in it) to this file")
	flag.Parse()
	c.only, c.skip = splitList(only), splitList(skip)
	var err error
	if c.fleetShards, err = intList(fleetShards); err == nil {
		c.fleetClusters, err = intList(fleetClusters)
	}
	if err == nil && len(c.fleetClusters) != len(c.fleetShards) {
		err = errors.New("-fleet-clusters needs one count per -fleet-shards entry")
	}
	for _, n := range append(slices.Clone(c.only), c.skip...) {
		if !slices.ContainsFunc(rows, func(r row) bool { return r.name == n }) {
			err = fmt.Errorf("unknown row %q (rows: %s)", n, rowNames())
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(2)
	}
	if c.benchProfile != "" {
		f, err := os.Create(c.benchProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			os.Exit(2)
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	code := run(ctx, c, os.Stdout)
	pprof.StopCPUProfile()
	stop()
	os.Exit(code)
}

func rowNames() string {
	var n []string
	for _, r := range rows {
		n = append(n, r.name)
	}
	return strings.Join(n, ",")
}

func splitList(s string) []string {
	var out []string
	for f := range strings.SplitSeq(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

func intList(s string) ([]int, error) {
	var out []int
	for _, f := range splitList(s) {
		var n int
		if _, err := fmt.Sscan(f, &n); err != nil || n <= 0 {
			return nil, fmt.Errorf("bad count %q", f)
		}
		out = append(out, n)
	}
	return out, nil
}

// run starts Redis, runs the rows and prints the report; it returns the
// exit code.
func run(ctx context.Context, c config, out io.Writer) int {
	start := time.Now()
	// Children read their log level from the environment; their logs are
	// noise here.
	_ = os.Setenv("MEGANE_LOG_LEVEL", "warn")
	url := c.redisURL
	if url == "" {
		srv, err := startRedis()
		if err != nil {
			fmt.Fprintln(os.Stderr, "bench:", err)
			return 1
		}
		defer srv.stop()
		url = srv.url()
		progress("redis-server on %s", srv.addr)
	}
	rdb, err := redisconn.Open(ctx, url)
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	defer rdb.Close()
	e := &env{ctx: ctx, url: url, rdb: rdb, cfg: c,
		log: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	rep := Report{
		Date:    time.Now().UTC().Format("2006-01-02 15:04 MST"),
		Machine: runtime.GOOS + "/" + runtime.GOARCH,
		Cores:   runtime.NumCPU(),
		Redis:   redisVersion(ctx, rdb),
		LoadAvg: loadAvg(),
	}
	for _, r := range rows {
		if (len(c.only) > 0 && !slices.Contains(c.only, r.name)) || slices.Contains(c.skip, r.name) {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		progress("row %s: %s", r.name, r.what)
		t := time.Now()
		if err := r.run(e); err != nil {
			progress("row %s failed: %v", r.name, err)
			rep.FailedRows = append(rep.FailedRows, r.name)
			e.notef("%s: failed: %v", r.name, err)
		}
		progress("row %s done in %s", r.name, time.Since(t).Round(time.Second))
	}
	rep.LoadAvg += " → " + loadAvg()
	rep.Elapsed = time.Since(start).Round(time.Second).String()
	rep.Figures, rep.Notes = e.figs, e.note
	if c.json {
		err = writeJSON(out, rep)
	} else {
		err = writeTable(out, rep)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		return 1
	}
	if len(rep.FailedRows) > 0 || ctx.Err() != nil {
		return 1
	}
	return 0
}
