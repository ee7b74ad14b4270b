// Command launcher measures the launcher with real cluster processes against
// the in-repo fake Discord and a real redis-server, and prints a table:
//
//   - cold start: launcher start to "all clusters ready", 4 clusters × 4
//     shards, max_concurrency 16 (every shard identifies at once);
//   - restart one cluster: RestartCluster (SIGTERM, exit with sessions saved,
//     respawn) until all its shards have RESUMEd;
//   - idle RSS (VmRSS of /proc/<pid>/status) of a cluster process running 16
//     shards, of the 4-shard clusters, and of the launcher.
//
// The binary is its own bot: the launcher re-executes it for every cluster.
// Start a throwaway server first:
//
//	redis-server --port 6398 --save '' --appendonly no --daemonize yes
//	go run ./bench/launcher -redis redis://127.0.0.1:6398/0
package main

import (
	"context"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"os"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/megane-go/megane/cluster"
	"github.com/megane-go/megane/discordtest"
	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/launcher"
	"github.com/megane-go/megane/redisconn"
)

type idleBot struct{}

func (idleBot) Launch(context.Context, *cluster.Cluster) error { return nil }

func main() {
	if os.Getenv("MEGANE_ROLE") != "" { // a cluster of one of the runs below
		if err := launcher.Run(context.Background(), launcher.Config{Worker: idleBot{}}); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		return
	}
	url := flag.String("redis", "redis://127.0.0.1:6398/0", "Redis URL (a throwaway server: the bench writes and deletes keys)")
	runs := flag.Int("runs", 3, "cold starts measured")
	restarts := flag.Int("restarts", 5, "single-cluster restarts measured")
	idle := flag.Duration("idle", 5*time.Second, "how long the 16-shard cluster idles before its RSS is read")
	guilds := flag.Int("guilds", 64, "guilds in the fake world")
	flag.Parse()

	ctx := context.Background()
	rdb, err := redisconn.Open(ctx, *url)
	if err != nil {
		log.Fatal(err)
	}
	defer rdb.Close()
	// Logs are noise here; children read the level from the environment.
	_ = os.Setenv("MEGANE_LOG_LEVEL", "warn")
	quiet := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))

	var rows [][]string
	row := func(cells ...string) { rows = append(rows, cells) }

	// Cold start and single-cluster restart, 4 × 4.
	var cold, restart []time.Duration
	var rss4 []int
	var launcherRSS int
	for i := range *runs {
		ks := keyspace.MustNew(fmt.Sprintf("bench-launcher-%d-%d", os.Getpid(), i))
		r, err := start(ctx, *url, ks, 16, 4, *guilds, quiet)
		if err != nil {
			log.Fatal(err)
		}
		cold = append(cold, r.ready)
		if i == 0 {
			for n := range *restarts {
				id := n % 4
				before := okResumes(r.fake)
				t0 := time.Now()
				if err := r.l.RestartCluster(ctx, id); err != nil {
					log.Fatal(err)
				}
				restart = append(restart, time.Since(t0))
				if got := okResumes(r.fake) - before; got != 4 {
					log.Fatalf("restart of cluster %d: %d resumes, want 4", id, got)
				}
			}
			st, _ := r.l.Status()
			for _, c := range st.Clusters {
				rss4 = append(rss4, vmRSS(c.PID))
			}
			launcherRSS = vmRSS(os.Getpid())
		}
		r.stop()
		testredis.Purge(ctx, rdb, ks)
	}
	row("cold start to all ready (4 clusters × 4 shards, mc 16)", strconv.Itoa(len(cold)), stats(cold))
	row("restart one cluster to all its 4 shards resumed", strconv.Itoa(len(restart)), stats(restart))

	// Idle RSS of one cluster with 16 shards.
	ks := keyspace.MustNew(fmt.Sprintf("bench-launcher-%d-rss", os.Getpid()))
	r, err := start(ctx, *url, ks, 16, 1, *guilds, quiet)
	if err != nil {
		log.Fatal(err)
	}
	time.Sleep(*idle) // the measurement is of an idle process
	st, _ := r.l.Status()
	rss16 := vmRSS(st.Clusters[0].PID)
	r.stop()
	testredis.Purge(ctx, rdb, ks)

	row("idle RSS, cluster with 16 shards", "1", kib(rss16))
	slices.Sort(rss4)
	row("idle RSS, clusters with 4 shards (min..max)", strconv.Itoa(len(rss4)), kib(rss4[0])+" .. "+kib(rss4[len(rss4)-1]))
	row("RSS, launcher process (with the fake Discord in it)", "1", kib(launcherRSS))

	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "scenario\tn\tresult")
	for _, r := range rows {
		fmt.Fprintln(tw, strings.Join(r, "\t"))
	}
	_ = tw.Flush()
}

type run struct {
	l     *launcher.Launcher
	fake  *discordtest.Server
	ready time.Duration
	stop  func()
}

// start runs a launcher in this process with clusters × (shards/clusters)
// against a fresh fake, and waits for all clusters ready.
func start(ctx context.Context, url string, ks keyspace.Keyspace, shards, clusters, guilds int, log *slog.Logger) (*run, error) {
	fake, err := discordtest.NewServer(discordtest.Options{
		Shards: shards, MaxConcurrency: 16, World: discordtest.WorldOptions{Guilds: guilds, Seed: 1},
	})
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	l, err := launcher.New(launcher.Config{
		Worker: idleBot{}, Token: fake.Token(), RESTURL: fake.RESTURL(), GatewayURL: fake.GatewayURL(),
		RedisURL: url, Namespace: ks.Namespace(), Shards: shards, Clusters: clusters, Logger: log,
	})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	select {
	case <-l.AllReady():
	case err := <-done:
		cancel()
		return nil, fmt.Errorf("launcher stopped: %w", err)
	case <-time.After(2 * time.Minute):
		cancel()
		return nil, fmt.Errorf("not ready after 2 minutes")
	}
	r := &run{l: l, fake: fake, ready: time.Since(t0)}
	r.stop = func() {
		cancel()
		if err := <-done; err != nil {
			fmt.Fprintln(os.Stderr, "launcher:", err)
		}
		_ = fake.Close()
	}
	return r, nil
}

func okResumes(s *discordtest.Server) int {
	n := 0
	for _, r := range s.Resumes() {
		if r.OK {
			n++
		}
	}
	return n
}

// vmRSS reads the resident set size of pid in KiB.
func vmRSS(pid int) int {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	return 0
}

func kib(n int) string { return fmt.Sprintf("%.1f MiB", float64(n)/1024) }

func stats(d []time.Duration) string {
	s := slices.Clone(d)
	slices.Sort(s)
	r := func(x time.Duration) string { return x.Round(time.Millisecond).String() }
	return fmt.Sprintf("median %s (min %s, max %s)", r(s[len(s)/2]), r(s[0]), r(s[len(s)-1]))
}
