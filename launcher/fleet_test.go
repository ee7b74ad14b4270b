package launcher

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/disgoorg/snowflake/v2"
	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/discordtest"
	"github.com/megane-go/megane/internal/testproc"
	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/internal/testwait"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/lifecycle"
	"github.com/megane-go/megane/redisipc"
)

// testbot is the bot the integration tests run. It is built without
// -race: disgo v0.19.6 races in normal operation, so a gateway never runs
// inside this (race-enabled) test binary; the fake Discord does.
var testbot = &testproc.Binary{Pkg: "./internal/testbot"}

func TestMain(m *testing.M) {
	os.Exit(testproc.Run(m, testbot, testbotV2, testbotCrash))
}

// fleetOptions shapes one bot run by a fleet.
type fleetOptions struct {
	shards, clusters int
	maxConcurrency   int
	identifyWindow   time.Duration
	guilds           int
	env              []string // extra KEY=VALUE for the launcher
	// redis is a private redis-server for tests that break Redis; nil:
	// the shared one of scripts/test.
	redis *testredis.Server
}

// fleet is one launcher process (the testbot) with its clusters, against a
// fake Discord in this process and the real redis-server.
type fleet struct {
	t    *testing.T
	opts fleetOptions
	srv  *discordtest.Server
	rdb  redis.UniversalClient
	ks   keyspace.Keyspace
	node *redisipc.Node
	log  string
	bin  string // the testbot

	cmd    *exec.Cmd
	exited chan struct{}
	// primary is the fleet whose bot a peer launcher joins (peer); nil
	// for the first launcher.
	primary *fleet
}

func newFleet(t *testing.T, o fleetOptions) *fleet {
	t.Helper()
	var rdb redis.UniversalClient
	var ks keyspace.Keyspace
	if o.redis != nil {
		rdb, ks = o.redis.Client(), keyspace.MustNew(testredis.Namespace(t))
	} else {
		rdb, ks = testredis.Real(t)
	}
	bin := testbot.Path(t)
	if o.guilds == 0 {
		o.guilds = 2 * o.shards
	}
	srv, err := discordtest.NewServer(discordtest.Options{
		Shards:         o.shards,
		MaxConcurrency: o.maxConcurrency,
		IdentifyWindow: o.identifyWindow,
		World:          discordtest.WorldOptions{Guilds: o.guilds, Seed: 7},
	})
	if err != nil {
		t.Fatalf("fake Discord: %v", err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	ctx := context.Background()
	node, err := redisipc.New(ctx, redisipc.Options{Redis: rdb, Keys: ks, Addr: "cli:test"})
	if err != nil {
		t.Fatalf("IPC node: %v", err)
	}
	t.Cleanup(func() { _ = node.Close(context.Background()) })
	f := &fleet{t: t, opts: o, srv: srv, rdb: rdb, ks: ks, node: node, log: filepath.Join(t.TempDir(), "launcher.log"), bin: bin}
	t.Cleanup(f.cleanup)
	return f
}

// start runs the launcher.
func (f *fleet) start() {
	f.t.Helper()
	o := f.opts
	env := append(os.Environ(),
		"DISCORD_TOKEN="+f.srv.Token(),
		"MEGANE_DISCORD_REST_URL="+f.srv.RESTURL(),
		"MEGANE_DISCORD_GATEWAY_URL="+f.srv.GatewayURL(),
		"REDIS_URL="+f.redisURL(),
		"MEGANE_NAMESPACE="+f.ks.Namespace(),
		"MEGANE_SHARDS="+strconv.Itoa(o.shards),
		"MEGANE_CLUSTERS="+strconv.Itoa(o.clusters),
		"MEGANE_HEARTBEAT_INTERVAL=500ms",
		"MEGANE_STATS_INTERVAL=1s", // the smallest accepted
		"MEGANE_STATUS_WEBHOOK="+f.srv.URL()+"/api/v10/webhooks/1/status",
		"MEGANE_RESTART_BACKOFF=100ms",
		"MEGANE_RESTART_BACKOFF_MAX=1s",
		"MEGANE_SHUTDOWN_TIMEOUT=10s",
		"MEGANE_READY_TIMEOUT=30s",
		"MEGANE_READY_TIMEOUT_PER_SHARD=2s",
	)
	if o.identifyWindow > 0 {
		env = append(env, "MEGANE_IDENTIFY_WINDOW="+o.identifyWindow.String())
	}
	env = append(env, o.env...)
	logf, err := os.OpenFile(f.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		f.t.Fatal(err)
	}
	cmd := exec.Command(f.bin)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		f.t.Fatalf("start testbot: %v", err)
	}
	_ = logf.Close()
	f.cmd, f.exited = cmd, make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) {
		_ = c.Wait()
		close(done)
	}(cmd, f.exited)
}

func (f *fleet) redisURL() string {
	if f.opts.redis != nil {
		return f.opts.redis.URL()
	}
	return testredis.URL(f.t)
}

func (f *fleet) running() bool {
	if f.cmd == nil {
		return false
	}
	select {
	case <-f.exited:
		return false
	default:
		return true
	}
}

// cleanup stops the launcher and makes sure no child outlives the test.
func (f *fleet) cleanup() {
	if f.running() {
		_ = f.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-f.exited:
		case <-time.After(15 * time.Second):
			_ = syscall.Kill(-f.cmd.Process.Pid, syscall.SIGKILL)
			<-f.exited
		}
	}
	if f.primary != nil {
		if f.t.Failed() {
			f.dumpLog()
		}
		return // the primary checks every child
	}
	for _, pid := range f.childPIDs() {
		if f.ours(pid) {
			f.t.Errorf("child %d outlived the launcher; killing it", pid)
			_ = syscall.Kill(-pid, syscall.SIGKILL)
		}
	}
	if f.t.Failed() {
		f.dumpLog()
	}
}

// ours reports whether pid is a live testbot process.
func (f *fleet) ours(pid int) bool {
	exe, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/exe")
	if err != nil {
		return false
	}
	if st, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); err == nil {
		// A zombie is dead already; it only waits for its parent.
		if _, rest, ok := strings.Cut(string(st), ") "); ok && strings.HasPrefix(rest, "Z") {
			return false
		}
	}
	return exe == f.bin
}

func (f *fleet) dumpLog() {
	file, err := os.Open(f.log)
	if err != nil {
		return
	}
	defer file.Close()
	var lines []string
	sc := bufio.NewScanner(file)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > 150 {
		lines = lines[len(lines)-150:]
	}
	f.t.Logf("launcher log (last %d lines):\n%s", len(lines), strings.Join(lines, "\n"))
}

func (f *fleet) logContains(s string) bool {
	b, _ := os.ReadFile(f.log)
	return strings.Contains(string(b), s)
}

// events returns every lifecycle event of the run so far.
func (f *fleet) events() []lifecycle.Event {
	f.t.Helper()
	var all []lifecycle.Event
	after := ""
	for {
		evs, next, err := lifecycle.Read(context.Background(), f.rdb, f.ks, after, 1000)
		if err != nil {
			f.t.Fatalf("read events: %v", err)
		}
		all = append(all, evs...)
		if len(evs) == 0 {
			return all
		}
		after = next
	}
}

func countEvents(evs []lifecycle.Event, typ lifecycle.Type, cluster int) int {
	n := 0
	for _, ev := range evs {
		if ev.Type == typ && (cluster < 0 || ev.Cluster == cluster) {
			n++
		}
	}
	return n
}

// childPIDs lists every process the launcher reported spawning.
func (f *fleet) childPIDs() []int {
	var pids []int
	evs, _, _ := lifecycle.Read(context.Background(), f.rdb, f.ks, "", 10000)
	for _, ev := range evs {
		if ev.Type != lifecycle.ClusterSpawned && ev.Type != lifecycle.ServiceSpawned {
			continue
		}
		if i := strings.Index(ev.Detail, "pid "); i >= 0 {
			if pid, err := strconv.Atoi(strings.Fields(ev.Detail[i+4:])[0]); err == nil {
				pids = append(pids, pid)
			}
		}
	}
	return pids
}

// status asks the launcher over IPC.
func (f *fleet) status() (Status, error) {
	// Short: a call made while no launcher runs is lost, not refused, until
	// the directory notices.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var st Status
	err := f.node.CallJSON(ctx, LauncherAddr, OpStatus, nil, &st)
	return st, err
}

// waitAllReady waits until the launcher reports every cluster ready.
func (f *fleet) waitAllReady(timeout time.Duration) Status {
	f.t.Helper()
	var st Status
	testwait.For(f.t, timeout, "every cluster ready", func() bool {
		if !f.running() {
			f.t.Fatalf("launcher exited")
		}
		var err error
		st, err = f.status()
		if err != nil {
			return false
		}
		for _, c := range st.Clusters {
			if c.State != StateReady {
				return false
			}
		}
		return len(st.Clusters) > 0
	})
	return st
}

// guildsOf returns the guilds owned by shards.
func (f *fleet) guildsOf(shards []int) []discordtest.Guild {
	own := map[int]bool{}
	for _, s := range shards {
		own[s] = true
	}
	var out []discordtest.Guild
	for _, g := range f.srv.World().Guilds {
		if own[discordtest.ShardFor(g.ID, f.opts.shards)] {
			out = append(out, g)
		}
	}
	return out
}

// say dispatches one user message to each guild and returns the message ids.
func (f *fleet) say(guilds []discordtest.Guild) []snowflake.ID {
	f.t.Helper()
	var ids []snowflake.ID
	for i, g := range guilds {
		sent, err := f.srv.SendMessage(discordtest.UserMessage{GuildID: g.ID, AuthorID: demoAuthor(g, i, f.srv.AppID()), Content: "hello"})
		if err != nil {
			f.t.Fatalf("message to guild %d: %v", g.ID, err)
		}
		ids = append(ids, sent.ID)
	}
	return ids
}

// seen counts the bot's "seen:<id>" answers per message id.
func (f *fleet) seen() map[snowflake.ID]int {
	out := map[snowflake.ID]int{}
	for _, m := range f.srv.Messages() {
		if v, ok := strings.CutPrefix(m.Content, "seen:"); ok {
			id, _ := snowflake.Parse(v)
			out[id]++
		}
	}
	return out
}

// waitSeen waits until every id was answered at least once.
func (f *fleet) waitSeen(ids []snowflake.ID, timeout time.Duration) {
	f.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	err := f.srv.WaitFor(ctx, func(*discordtest.Server) bool {
		seen := f.seen()
		for _, id := range ids {
			if seen[id] == 0 {
				return false
			}
		}
		return true
	})
	if err != nil {
		seen := f.seen()
		var missing []string
		for _, id := range ids {
			if seen[id] == 0 {
				missing = append(missing, id.String())
			}
		}
		f.t.Fatalf("%d of %d messages never reached the bot: %v", len(missing), len(ids), missing)
	}
}

// shardActivity counts identifies and successful resumes per shard.
func (f *fleet) shardActivity() (identifies, resumes map[int]int) {
	identifies, resumes = map[int]int{}, map[int]int{}
	for _, r := range f.srv.Identifies() {
		identifies[r.Shard]++
	}
	for _, r := range f.srv.Resumes() {
		if r.OK {
			resumes[r.Shard]++
		}
	}
	return identifies, resumes
}

func contains(shards []int, s int) bool {
	for _, x := range shards {
		if x == s {
			return true
		}
	}
	return false
}

// oneDownAtATime fails t when a cluster exited while another one was down:
// each exit must follow the previous cluster's ready.
func oneDownAtATime(t *testing.T, evs []lifecycle.Event) {
	t.Helper()
	down := -1
	for _, ev := range evs {
		switch ev.Type {
		case lifecycle.ClusterExited:
			if down >= 0 {
				t.Errorf("cluster %d went down while cluster %d was down", ev.Cluster, down)
			}
			down = ev.Cluster
		case lifecycle.ClusterReady:
			if ev.Cluster == down {
				down = -1
			}
		}
	}
}
