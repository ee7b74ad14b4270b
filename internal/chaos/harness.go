package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/disgoorg/snowflake/v2"
	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/discordtest"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/lifecycle"
)

// redisServer is a redis-server process owned by the suite, so it can be
// paused, filled up, flushed and restarted without touching anyone else's.
type redisServer struct {
	port   int
	dir    string
	cmd    *exec.Cmd
	exited chan struct{}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// startRedis starts redis-server on port with its files in dir. The
// append-only file is on and fsynced at every write, so a restart with
// persistence keeps everything.
func startRedis(dir string, port int) (*redisServer, error) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		return nil, fmt.Errorf("redis-server is not installed (scripts/test installs it): %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	r := &redisServer{port: port, dir: dir}
	return r, r.start()
}

func (r *redisServer) start() error {
	logf, err := os.OpenFile(filepath.Join(r.dir, "redis.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close()
	cmd := exec.Command("redis-server", "--port", strconv.Itoa(r.port), "--bind", "127.0.0.1",
		"--dir", r.dir, "--save", "", "--appendonly", "yes", "--appendfsync", "always",
		"--daemonize", "no", "--loglevel", "warning")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start redis-server: %w", err)
	}
	r.cmd, r.exited = cmd, make(chan struct{})
	go func(c *exec.Cmd, done chan struct{}) { _ = c.Wait(); close(done) }(cmd, r.exited)
	c := r.client()
	defer c.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-r.exited:
			return fmt.Errorf("redis-server exited at start; see %s", filepath.Join(r.dir, "redis.log"))
		default:
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("redis-server on port %d does not answer PING: %w", r.port, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (r *redisServer) url() string { return "redis://127.0.0.1:" + strconv.Itoa(r.port) + "/0" }

// client returns a client that gives up quickly, so that checks made during
// an outage report it instead of hanging.
func (r *redisServer) client() *redis.Client {
	return redis.NewClient(&redis.Options{Addr: "127.0.0.1:" + strconv.Itoa(r.port),
		DialTimeout: 500 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: time.Second,
		MaxRetries: -1, PoolSize: 4})
}

func (r *redisServer) signal(sig syscall.Signal) error { return r.cmd.Process.Signal(sig) }

// stop ends the server: SIGTERM (it flushes its append-only file) or
// SIGKILL.
func (r *redisServer) stop(sig syscall.Signal) {
	_ = r.cmd.Process.Signal(sig)
	select {
	case <-r.exited:
	case <-time.After(10 * time.Second):
		_ = r.cmd.Process.Kill()
		<-r.exited
	}
}

// restart stops the server and starts it again on the same port; without
// persist its files are deleted first, so it comes back empty.
func (r *redisServer) restart(persist bool) error {
	if persist {
		r.stop(syscall.SIGTERM)
	} else {
		r.stop(syscall.SIGKILL)
		entries, _ := os.ReadDir(r.dir)
		for _, e := range entries {
			if e.Name() != "redis.log" {
				_ = os.RemoveAll(filepath.Join(r.dir, e.Name()))
			}
		}
	}
	return r.start()
}

// bot is one chaosbot launcher process with its children.
type bot struct {
	cmd    *exec.Cmd
	exited chan struct{}
	log    string
	bin    string
	err    error // the launcher's exit, once exited
}

type botOptions struct {
	clusters, shards int
	env              []string
}

func startBot(bin, logPath string, srv *discordtest.Server, rs *redisServer, ks keyspace.Keyspace, o botOptions) (*bot, error) {
	env := append(os.Environ(),
		"DISCORD_TOKEN="+srv.Token(),
		"MEGANE_DISCORD_REST_URL="+srv.RESTURL(),
		"MEGANE_DISCORD_GATEWAY_URL="+srv.GatewayURL(),
		"REDIS_URL="+rs.url(),
		"MEGANE_NAMESPACE="+ks.Namespace(),
		"MEGANE_SHARDS="+strconv.Itoa(o.shards),
		"MEGANE_CLUSTERS="+strconv.Itoa(o.clusters),
		"MEGANE_IDENTIFY_WINDOW=100ms",
		"MEGANE_HEARTBEAT_INTERVAL=500ms",
		"MEGANE_STATS_INTERVAL=1s",
		"MEGANE_RESTART_BACKOFF=100ms",
		"MEGANE_RESTART_BACKOFF_MAX=1s",
		"MEGANE_MAX_RESTARTS=1000",
		"MEGANE_SHUTDOWN_TIMEOUT=10s",
		"MEGANE_READY_TIMEOUT=30s",
		"MEGANE_READY_TIMEOUT_PER_SHARD=2s",
	)
	env = append(env, o.env...)
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(bin)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start chaosbot: %w", err)
	}
	b := &bot{cmd: cmd, exited: make(chan struct{}), log: logPath, bin: bin}
	go func() { b.err = cmd.Wait(); close(b.exited) }()
	return b, nil
}

func (b *bot) running() bool {
	select {
	case <-b.exited:
		return false
	default:
		return true
	}
}

// stop asks the launcher to stop (SIGTERM) and waits for it; the error is
// its exit status, or a timeout after which the whole process group is
// killed.
func (b *bot) stop(timeout time.Duration) error {
	if !b.running() {
		return fmt.Errorf("launcher had exited already: %v", b.err)
	}
	_ = b.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-b.exited:
		return b.err
	case <-time.After(timeout):
		_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
		<-b.exited
		return fmt.Errorf("launcher did not stop within %s", timeout)
	}
}

// kill ends the launcher's whole process group at once.
func (b *bot) kill() {
	_ = syscall.Kill(-b.cmd.Process.Pid, syscall.SIGKILL)
	<-b.exited
}

// tail returns the last n lines of the launcher's log.
func (b *bot) tail(n int) string {
	f, err := os.Open(b.log)
	if err != nil {
		return ""
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// child is a live process spawned by the launcher, as /proc tells: it needs
// no Redis, which the suite takes down.
type child struct {
	pid     int
	role    string
	cluster int
	service string
	copy    int
}

func (c child) String() string {
	if c.role == "cluster" {
		return "cluster:" + strconv.Itoa(c.cluster)
	}
	return fmt.Sprintf("service:%s#%d", c.service, c.copy)
}

// children lists the launcher's live children, sorted by role and id.
func (b *bot) children() []child {
	ppid := b.cmd.Process.Pid
	entries, _ := os.ReadDir("/proc")
	var out []child
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		stat, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		_, rest, ok := strings.Cut(string(stat), ") ")
		fields := strings.Fields(rest)
		if !ok || len(fields) < 2 || fields[0] == "Z" || fields[1] != strconv.Itoa(ppid) {
			continue
		}
		env, err := os.ReadFile("/proc/" + e.Name() + "/environ")
		if err != nil {
			continue
		}
		c := child{pid: pid, cluster: -1}
		for _, kv := range strings.Split(string(env), "\x00") {
			k, v, _ := strings.Cut(kv, "=")
			switch k {
			case "MEGANE_ROLE":
				c.role = v
			case "MEGANE_CLUSTER_ID":
				c.cluster, _ = strconv.Atoi(v)
			case "MEGANE_SERVICE":
				c.service = v
			case "MEGANE_SERVICE_COPY":
				c.copy, _ = strconv.Atoi(v)
			}
		}
		if c.role != "" {
			out = append(out, c)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].String() < out[j].String() })
	return out
}

// pids maps each child to its pid.
func (b *bot) pids() map[string]int {
	m := map[string]int{}
	for _, c := range b.children() {
		m[c.String()] = c.pid
	}
	return m
}

// hwmMiB is the peak resident memory of pid in MiB, or -1.
func hwmMiB(pid int) float64 {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return -1
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "VmHWM:"); ok {
			kb, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return float64(kb) / 1024
		}
	}
	return -1
}

// waitFor polls cond until it holds or timeout passes.
func waitFor(ctx context.Context, what string, timeout time.Duration, cond func() bool) error {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("timed out after %s waiting for %s", timeout, what)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// events reads the whole lifecycle stream.
func events(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace) []lifecycle.Event {
	var all []lifecycle.Event
	after := ""
	for {
		evs, next, err := lifecycle.Read(ctx, rdb, ks, after, 1000)
		if err != nil || len(evs) == 0 {
			return all
		}
		all, after = append(all, evs...), next
	}
}

func countEvents(evs []lifecycle.Event, types ...lifecycle.Type) int {
	n := 0
	for _, ev := range evs {
		for _, t := range types {
			if ev.Type == t {
				n++
			}
		}
	}
	return n
}

// traffic dispatches numbered user messages ("chaos:<n>") round robin over
// every guild's first text channel, and checks the bot's answers against
// them.
type traffic struct {
	srv      *discordtest.Server
	channels []channelRef

	mu   sync.Mutex
	sent map[string]time.Time // content -> when it was dispatched
	next int
}

type channelRef struct {
	guild, channel snowflake.ID
}

func newTraffic(srv *discordtest.Server) *traffic {
	t := &traffic{srv: srv, sent: map[string]time.Time{}}
	w := srv.World()
	for _, g := range w.Guilds {
		if ch, ok := w.FirstTextChannel(g.ID); ok {
			t.channels = append(t.channels, channelRef{g.ID, ch.ID})
		}
	}
	return t
}

// send dispatches one message; a shard with no session (closed for good)
// is skipped and reported.
func (t *traffic) send() error {
	t.mu.Lock()
	n := t.next
	t.next++
	t.mu.Unlock()
	ch := t.channels[n%len(t.channels)]
	content := "chaos:" + strconv.Itoa(n)
	at := time.Now()
	if _, err := t.srv.SendUserMessage(ch.channel, 0, content); err != nil {
		return err
	}
	t.mu.Lock()
	t.sent[content] = at
	t.mu.Unlock()
	return nil
}

// startTraffic dispatches a message every interval until the returned stop
// is called (or ctx ends); stop waits for the sender to finish and may be
// called more than once.
func startTraffic(ctx context.Context, srv *discordtest.Server, interval time.Duration) (*traffic, func()) {
	t := newTraffic(srv)
	tctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { defer close(done); t.run(tctx, interval) }()
	return t, func() { cancel(); <-done }
}

// run sends a message every interval until ctx ends.
func (t *traffic) run(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
			_ = t.send()
		}
	}
}

// tally counts the answers: how many sent messages were answered, how many
// never, and which were answered more than once.
type tally struct {
	sent, answered, lost int
	duplicates           []string
}

func (t *traffic) tally() tally { return t.tallyBefore(time.Time{}) }

// tallyBefore counts only the messages dispatched before cutoff (all of
// them when cutoff is zero).
func (t *traffic) tallyBefore(cutoff time.Time) tally {
	seen := map[string]int{}
	for _, m := range t.srv.Messages() {
		if c, ok := strings.CutPrefix(m.Content, "seen:"); ok {
			seen[c]++
		}
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	r := tally{sent: len(t.sent)}
	for c, at := range t.sent {
		if !cutoff.IsZero() && !at.Before(cutoff) {
			r.sent--
			continue
		}
		switch n := seen[c]; {
		case n == 0:
			r.lost++
		default:
			r.answered++
			if n > 1 {
				r.duplicates = append(r.duplicates, c)
			}
		}
	}
	sort.Strings(r.duplicates)
	return r
}

func (t *traffic) sentAt(content string) time.Time {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sent[content]
}

// waitAnswered waits until every sent message was answered.
func (t *traffic) waitAnswered(ctx context.Context, timeout time.Duration) (tally, error) {
	var r tally
	err := waitFor(ctx, "every message answered", timeout, func() bool {
		r = t.tally()
		return r.lost == 0
	})
	return r, err
}

var errSkipped = errors.New("skipped")
