package main

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/megane-go/megane/discordtest"
	"github.com/megane-go/megane/redisipc"
)

// runEvents measures how many gateway events one cluster process takes in
// with the projection on, against the same disgo decoding the same flood
// with nothing else (no Megane, no projection, no listeners, no raw
// events), in the same run: the fake floods a mix of MESSAGE_CREATE (70 %)
// and GUILD_UPDATE, GUILD_MEMBER_UPDATE, GUILD_ROLE_UPDATE into every shard
// as fast as the sockets take them, the two sides in turn.
func runEvents(e *env) error {
	ctx, c := e.ctx, e.cfg
	shards := c.eventsShards
	prof := c.cpuprofile
	if prof == "" {
		dir, err := os.MkdirTemp("", "megane-bench-prof-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		prof = filepath.Join(dir, "cluster.pprof")
	}
	_ = os.Setenv(envCPUProfile, prof)
	progress("events: a cluster process of %d shards with the projection", shards)
	subj, err := startFleet(e, fleetSpec{name: "events", shards: shards, clusters: 1, guilds: 8 * shards, members: 5, skipValidation: true})
	_ = os.Unsetenv(envCPUProfile)
	if err != nil {
		return err
	}
	defer subj.stop()
	clusterPID := subj.clusterPIDs()[0]

	progress("events: disgo alone, %d shards", shards)
	fake, err := discordtest.NewServer(discordtest.Options{Shards: shards, MaxConcurrency: 16, SkipPayloadValidation: true,
		World: discordtest.WorldOptions{Guilds: 8 * shards, MembersPerGuild: 5, Seed: 1}})
	if err != nil {
		return err
	}
	defer fake.Close()
	dec, err := startChild(ctx, roleDecode, envGateway+"="+fake.GatewayURL(), envREST+"="+fake.RESTURL(),
		envToken+"="+fake.Token(), envShards+"="+strconv.Itoa(shards))
	if err != nil {
		return err
	}
	defer stopChild(dec)
	if err := fake.WaitFor(ctx, func(s *discordtest.Server) bool { return s.ShardsReady(shards) }); err != nil {
		return err
	}

	node, err := redisipc.New(ctx, redisipc.Options{Redis: e.rdb, Keys: subj.ks, Addr: "cli:bench"})
	if err != nil {
		return err
	}
	defer node.Close(context.Background())
	before, err := node.StatsOf(ctx, "cluster:0")
	if err != nil {
		return fmt.Errorf("cluster stats: %w", err)
	}

	type sample struct{ rate, cpuPerEvent, cmdsPerEvent, redisCPUPerEvent float64 }
	// A sample is a fixed amount of work: events-n events spread over the
	// shards, flooded as fast as the sockets take them, timed from the
	// first event until the process has gone idle again (it has then
	// decoded them all and, with the projection, written them to Redis).
	// Counting at the sender over a fixed time would count what waits in
	// the sockets' buffers, which hold a few hundred thousand compressed
	// events.
	perShard := int64(c.eventsN / shards)
	measure := func(fake *discordtest.Server, pid int) (sample, error) {
		waitIdle(pid)
		cpu0, cmd0, rcpu0, t0 := cpuSeconds(pid), commandsProcessed(ctx, e.rdb), redisCPU(e), time.Now()
		var floods []*discordtest.Flood
		for s := range shards {
			f, err := fake.Flood(s, discordtest.FloodOptions{Limit: perShard})
			if err != nil {
				for _, f := range floods {
					_, _ = f.Stop()
				}
				return sample{}, err
			}
			floods = append(floods, f)
		}
		var total int64
		for _, f := range floods {
			<-f.Done()
			n, err := f.Stop()
			if err != nil {
				return sample{}, err
			}
			total += n
		}
		t1 := waitIdle(pid)
		cpu1, cmd1, rcpu1 := cpuSeconds(pid), commandsProcessed(ctx, e.rdb), redisCPU(e)
		ev := float64(total)
		progress("events: sample: %d events in %s", total, t1.Sub(t0).Round(time.Millisecond))
		return sample{rate: ev / t1.Sub(t0).Seconds(), cpuPerEvent: (cpu1 - cpu0) * 1e6 / ev,
			cmdsPerEvent: float64(cmd1-cmd0) / ev, redisCPUPerEvent: (rcpu1 - rcpu0) * 1e6 / ev}, nil
	}
	var subjS, baseS []sample
	var ratios []float64
	_ = syscall.Kill(clusterPID, syscall.SIGUSR1)
	for i := range c.eventsRounds {
		progress("events: round %d of %d", i+1, c.eventsRounds)
		var s, b sample
		var err error
		if i%2 == 0 {
			if b, err = measure(fake, dec.Process.Pid); err == nil {
				s, err = measure(subj.fake, clusterPID)
			}
		} else {
			if s, err = measure(subj.fake, clusterPID); err == nil {
				b, err = measure(fake, dec.Process.Pid)
			}
		}
		if err != nil {
			return err
		}
		subjS, baseS, ratios = append(subjS, s), append(baseS, b), append(ratios, s.rate/b.rate)
	}
	_ = syscall.Kill(clusterPID, syscall.SIGUSR2)
	after, err := node.StatsOf(ctx, "cluster:0")
	if err != nil {
		return fmt.Errorf("cluster stats: %w", err)
	}
	pick := func(ss []sample, f func(sample) float64) float64 {
		var xs []float64
		for _, s := range ss {
			xs = append(xs, f(s))
		}
		return median(xs)
	}
	rate := func(s sample) float64 { return s.rate }
	cpu := func(s sample) float64 { return s.cpuPerEvent }
	ratio := median(ratios)
	e.add(Figure{Row: "events", Name: fmt.Sprintf("gateway events/s into 1 cluster process, %d shards, projection on", shards),
		Value: pick(subjS, rate), Unit: "/s", Baseline: "disgo decoding only", BaselineValue: pick(baseS, rate), Ratio: ratio,
		Target: "≥ 0.8× decode-only", Met: met(ratio >= 0.8)})
	e.add(Figure{Row: "events", Name: "CPU per gateway event, cluster process", Value: pick(subjS, cpu), Unit: "µs",
		Baseline: "disgo alone", BaselineValue: pick(baseS, cpu), Ratio: pick(subjS, cpu) / pick(baseS, cpu)})
	e.add(Figure{Row: "events", Name: "Redis commands per gateway event", Value: pick(subjS, func(s sample) float64 { return s.cmdsPerEvent }), Unit: ""})
	e.add(Figure{Row: "events", Name: "Redis CPU per gateway event", Value: pick(subjS, func(s sample) float64 { return s.redisCPUPerEvent }), Unit: "µs"})
	if b, a := before.Cluster, after.Cluster; b != nil && a != nil && b.Cache != nil && a.Cache != nil {
		drops := a.Cache.Drops - b.Cache.Drops
		acc := a.Cache.Events - b.Cache.Events
		e.add(Figure{Row: "events", Name: "projection: events dropped (queue full) of those it accepted", Value: float64(drops), Unit: "",
			Baseline: "accepted", BaselineValue: float64(acc), Target: "0", Met: met(drops == 0)})
	}
	if top := pprofTop(prof, 5); top != "" {
		e.notef("events: where the cluster process's CPU goes (pprof -top, cumulative over the subject's samples):\n\n```\n%s\n```", top)
	}
	return nil
}

// waitIdle waits (at most 30 s) until pid uses less than 10 % of a core
// over 100 ms, and returns when it was last seen busy.
func waitIdle(pid int) time.Time {
	deadline := time.Now().Add(30 * time.Second)
	last, busy := cpuSeconds(pid), time.Now()
	for time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
		now := cpuSeconds(pid)
		if now-last >= 0.005 {
			busy = time.Now()
		} else if time.Since(busy) >= 100*time.Millisecond {
			return busy
		}
		last = now
	}
	return busy
}

// cpuSeconds is pid's user+system CPU time.
func cpuSeconds(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	s := string(b)
	// Fields after the command (which may hold spaces) start after ')'.
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0
	}
	f := strings.Fields(s[i+1:])
	if len(f) < 13 {
		return 0
	}
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ is 100 on Linux
}

// redisCPU is redis-server's used CPU (user + system) in seconds.
func redisCPU(e *env) float64 {
	u, _ := strconv.ParseFloat(infoField(e.ctx, e.rdb, "cpu", "used_cpu_user"), 64)
	s, _ := strconv.ParseFloat(infoField(e.ctx, e.rdb, "cpu", "used_cpu_sys"), 64)
	return u + s
}

// pprofTop is `go tool pprof -top` of a profile of this binary, its first
// n functions by flat time, or "" when it cannot be had (no go command).
func pprofTop(profile string, n int) string {
	exe, err := os.Executable()
	if err != nil {
		return ""
	}
	if _, err := os.Stat(profile); err != nil {
		return ""
	}
	out, err := exec.Command("go", "tool", "pprof", "-top", "-nodecount="+strconv.Itoa(n), exe, profile).Output()
	if err != nil {
		return ""
	}
	lines := strings.Split(strings.TrimSpace(string(out)), "\n")
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "flat ") {
			return strings.Join(lines[max(0, i-1):], "\n")
		}
	}
	return strings.Join(lines, "\n")
}
