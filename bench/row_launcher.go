package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/megane-go/megane/discordtest"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/launcher"
)

// fleetRun is a launcher running in the bench process against a fake of
// its own, its clusters real processes (this binary again).
type fleetRun struct {
	l     *launcher.Launcher
	fake  *discordtest.Server
	ks    keyspace.Keyspace
	ready time.Duration
	stop  func()
}

// fleetSpec shapes startFleet.
type fleetSpec struct {
	name           string
	shards         int
	clusters       int
	guilds         int
	members        int
	window         time.Duration // the fake's and the launcher's identify window; 0: Discord's 5 s
	services       bool          // run the echo service (one copy)
	noCache        bool          // clusters without the projection
	skipValidation bool
}

// startFleet starts a fake and a launcher and waits until every cluster
// is ready; ready is the time from launcher start to that.
func startFleet(e *env, s fleetSpec) (*fleetRun, error) {
	ks := keyspace.MustNew(fmt.Sprintf("bench-%s-%d", s.name, os.Getpid()))
	purge(e.ctx, e.rdb, ks)
	fake, err := discordtest.NewServer(discordtest.Options{
		Shards: s.shards, MaxConcurrency: 16, IdentifyWindow: s.window, SessionStartTotal: 1 << 20,
		World:                 discordtest.WorldOptions{Guilds: s.guilds, MembersPerGuild: s.members, Users: max(50, s.members*4), Seed: 1},
		SkipPayloadValidation: s.skipValidation,
	})
	if err != nil {
		return nil, err
	}
	cfg := launcherConfig()
	if !s.services {
		cfg.Services = nil
	}
	cfg.Token, cfg.RESTURL, cfg.GatewayURL = fake.Token(), fake.RESTURL(), fake.GatewayURL()
	cfg.RedisURL, cfg.Namespace, cfg.Shards, cfg.Clusters = e.url, ks.Namespace(), s.shards, s.clusters
	cfg.IdentifyWindow, cfg.Logger = s.window, e.log
	// Children inherit the environment as it is when they are spawned.
	if s.noCache {
		_ = os.Setenv(envNoCache, "1")
	} else {
		_ = os.Unsetenv(envNoCache)
	}
	t0 := time.Now()
	l, err := launcher.New(cfg)
	if err != nil {
		_ = fake.Close()
		return nil, err
	}
	ctx, cancel := context.WithCancel(e.ctx)
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	select {
	case <-l.AllReady():
	case err := <-done:
		cancel()
		_ = fake.Close()
		return nil, fmt.Errorf("launcher stopped: %w", err)
	case <-time.After(3 * time.Minute):
		cancel()
		<-done
		_ = fake.Close()
		return nil, fmt.Errorf("%s: not ready after 3 minutes", s.name)
	}
	r := &fleetRun{l: l, fake: fake, ks: ks, ready: time.Since(t0)}
	r.stop = func() {
		cancel()
		if err := <-done; err != nil && e.ctx.Err() == nil {
			progress("launcher: %v", err)
		}
		_ = fake.Close()
		purge(context.Background(), e.rdb, ks)
		_ = os.Unsetenv(envNoCache)
	}
	return r, nil
}

// clusterPIDs are the pids of the run's cluster processes.
func (r *fleetRun) clusterPIDs() []int {
	st, _ := r.l.Status()
	var pids []int
	for _, c := range st.Clusters {
		pids = append(pids, c.PID)
	}
	return pids
}

// runLauncher measures a cold start of 4 clusters × 4 shards and the
// restart of one cluster until its shards resumed.
func runLauncher(e *env) error {
	var cold, restart []float64
	for i := range e.cfg.coldRuns {
		progress("launcher: cold start %d of %d", i+1, e.cfg.coldRuns)
		r, err := startFleet(e, fleetSpec{name: "launcher" + strconv.Itoa(i), shards: 16, clusters: 4, guilds: 64})
		if err != nil {
			return err
		}
		cold = append(cold, r.ready.Seconds())
		if i == 0 {
			for n := range e.cfg.restarts {
				id := n % 4
				before := okResumes(r.fake)
				t0 := time.Now()
				if err := r.l.RestartCluster(e.ctx, id); err != nil {
					r.stop()
					return err
				}
				restart = append(restart, time.Since(t0).Seconds())
				if got := okResumes(r.fake) - before; got != 4 {
					r.stop()
					return fmt.Errorf("restart of cluster %d: %d resumes, want 4", id, got)
				}
			}
		}
		r.stop()
	}
	e.add(Figure{Row: "launcher", Name: "cold start to all ready, 4 clusters × 4 shards, mc 16", Value: median(cold), Unit: "s"})
	e.add(Figure{Row: "launcher", Name: "restart one cluster until its 4 shards resumed", Value: median(restart), Unit: "s"})
	e.notef("launcher: a cold start includes disgo's fixed ~1 s wait before a shard's first connect.")
	return nil
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

// runMemory measures idle memory of a launcher process of its own (no
// demo fake, no embedded Redis in it), its cluster of 16 shards and its
// service copy.
func runMemory(e *env) error {
	ctx := e.ctx
	ks := keyspace.MustNew(fmt.Sprintf("bench-memory-%d", os.Getpid()))
	purge(ctx, e.rdb, ks)
	defer purge(context.Background(), e.rdb, ks)
	fake, err := discordtest.NewServer(discordtest.Options{Shards: 16, MaxConcurrency: 16,
		World: discordtest.WorldOptions{Guilds: 64, Seed: 1}})
	if err != nil {
		return err
	}
	defer fake.Close()
	progress("memory: a launcher process with 1 cluster × 16 shards and 1 service copy, idling %s", e.cfg.idle)
	cmd, err := startLauncherChild(ctx, e.url, ks, fake, 16, 1)
	if err != nil {
		return err
	}
	defer stopChild(cmd)
	if err := fake.WaitFor(ctx, func(s *discordtest.Server) bool { return s.ShardsReady(16) }); err != nil {
		return err
	}
	var clusterPID, servicePID int
	deadline := time.Now().Add(time.Minute)
	for (clusterPID == 0 || servicePID == 0) && time.Now().Before(deadline) {
		for _, pid := range childrenOf(cmd.Process.Pid) {
			switch roleOf(pid) {
			case "cluster":
				clusterPID = pid
			case "service":
				servicePID = pid
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if clusterPID == 0 || servicePID == 0 {
		return fmt.Errorf("memory: cluster pid %d, service pid %d", clusterPID, servicePID)
	}
	time.Sleep(e.cfg.idle)
	cm, sm, lm := memOf(clusterPID), memOf(servicePID), memOf(cmd.Process.Pid)
	e.add(Figure{Row: "memory", Name: "idle RSS, cluster process with 16 shards", Value: mib(cm.rss), Unit: "MiB",
		Target: "≤ 20 MiB", Met: met(mib(cm.rss) <= 20)})
	e.add(Figure{Row: "memory", Name: "idle RSS without the binary's file pages (RssAnon), same cluster", Value: mib(cm.anon), Unit: "MiB"})
	e.add(Figure{Row: "memory", Name: "idle USS (private pages), same cluster", Value: mib(cm.uss), Unit: "MiB"})
	e.add(Figure{Row: "memory", Name: "idle RSS / USS, service copy", Value: mib(sm.rss), Unit: "MiB",
		Baseline: "USS", BaselineValue: mib(sm.uss)})
	e.add(Figure{Row: "memory", Name: "idle RSS / USS, launcher (no demo fake, no embedded Redis)", Value: mib(lm.rss), Unit: "MiB",
		Baseline: "USS", BaselineValue: mib(lm.uss)})
	return nil
}

// startLauncherChild runs a launcher as a process of its own (this binary,
// BENCH_ROLE=launcher, configured by the environment like any launcher).
func startLauncherChild(ctx context.Context, url string, ks keyspace.Keyspace, fake *discordtest.Server, shards, clusters int) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe)
	cmd.Env = append(os.Environ(), envRole+"="+roleLauncher,
		"DISCORD_TOKEN="+fake.Token(), "MEGANE_DISCORD_REST_URL="+fake.RESTURL(), "MEGANE_DISCORD_GATEWAY_URL="+fake.GatewayURL(),
		"REDIS_URL="+url, "MEGANE_NAMESPACE="+ks.Namespace(),
		"MEGANE_SHARDS="+strconv.Itoa(shards), "MEGANE_CLUSTERS="+strconv.Itoa(clusters))
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	return cmd, nil
}

// childrenOf lists pid's child processes.
func childrenOf(pid int) []int {
	var out []int
	tasks, _ := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/task")
	for _, t := range tasks {
		b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/task/" + t.Name() + "/children")
		for _, f := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(f); err == nil && !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	return out
}

// roleOf is a process's MEGANE_ROLE.
func roleOf(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/environ")
	role := ""
	for kv := range strings.SplitSeq(string(b), "\x00") {
		if v, ok := strings.CutPrefix(kv, "MEGANE_ROLE="); ok {
			role = v
		}
	}
	return role
}
