package discordtest

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// probeBin is the disgo probe bot, built once by TestMain. disgo's gateway has data
// races, so real disgo clients run as separate processes built without -race.
var probeBin string

func TestMain(m *testing.M) {
	code := func() int {
		dir, err := os.MkdirTemp("", "discordtest-probe")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(dir)
		goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(goTool); err != nil {
			goTool = "go"
		}
		probeBin = filepath.Join(dir, "probebot")
		cmd := exec.Command(goTool, "build", "-o", probeBin, "./internal/probebot")
		cmd.Env = append(os.Environ(), "GOFLAGS=-buildvcs=false")
		if out, err := cmd.CombinedOutput(); err != nil {
			fmt.Fprintf(os.Stderr, "building probebot: %v\n%s", err, out)
			return 1
		}
		return m.Run()
	}()
	os.Exit(code)
}

// probeEvent is one JSON line printed by the probe bot.
type probeEvent struct {
	Ev        string `json:"ev"`
	T         string `json:"t"`
	Kind      string `json:"kind"`
	Shard     int    `json:"shard"`
	Seq       int    `json:"seq"`
	GuildID   string `json:"guild_id"`
	ChannelID string `json:"channel_id"`
	Content   string `json:"content"`
	SessionID string `json:"session_id"`
	Err       string `json:"err"`
}

// probe is a running probe bot process.
type probe struct {
	t      testing.TB
	name   string
	cmd    *exec.Cmd
	mu     sync.Mutex
	events []probeEvent
	stderr bytes.Buffer
	exited chan struct{}
}

type probeConfig struct {
	shards       string // "0,1"
	count        int
	compression  string // zstd (default), zlib, none
	identifyWait time.Duration
	reply        bool
}

func startProbe(t testing.TB, srv *Server, name string, cfg probeConfig) *probe {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	args := []string{"-token", srv.Token(), "-rest", srv.RESTURL(), "-log", "warn"}
	if cfg.shards != "" {
		args = append(args, "-shards", cfg.shards)
	}
	if cfg.count > 0 {
		args = append(args, "-count", fmt.Sprint(cfg.count))
	}
	if cfg.compression != "" {
		args = append(args, "-compression", cfg.compression)
	}
	if cfg.identifyWait > 0 {
		args = append(args, "-identify-wait", cfg.identifyWait.String())
	}
	if cfg.reply {
		args = append(args, "-reply")
	}
	p := &probe{t: t, name: name, cmd: exec.CommandContext(ctx, probeBin, args...), exited: make(chan struct{})}
	p.cmd.Stderr = &lockedWriter{mu: &p.mu, w: &p.stderr}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var ev probeEvent
			if json.Unmarshal(sc.Bytes(), &ev) != nil {
				continue
			}
			p.mu.Lock()
			p.events = append(p.events, ev)
			p.mu.Unlock()
		}
		_ = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		cancel()
		<-p.exited
		if t.Failed() {
			p.mu.Lock()
			t.Logf("probe %s stderr:\n%s", p.name, p.stderr.String())
			p.mu.Unlock()
		}
	})
	return p
}

type lockedWriter struct {
	mu *sync.Mutex
	w  *bytes.Buffer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// snapshot returns the events printed so far.
func (p *probe) snapshot() []probeEvent {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]probeEvent(nil), p.events...)
}

func (p *probe) count(match func(probeEvent) bool) int {
	n := 0
	for _, ev := range p.snapshot() {
		if match(ev) {
			n++
		}
	}
	return n
}

// waitProbe waits until cond holds for the probes' output, failing on timeout or
// when a probe reports an error.
func waitProbes(t testing.TB, what string, timeout time.Duration, probes []*probe, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for !cond() {
		for _, p := range probes {
			for _, ev := range p.snapshot() {
				if ev.Ev == "error" {
					t.Fatalf("probe %s reported an error: %s", p.name, ev.Err)
				}
			}
		}
		if time.Now().After(deadline) {
			var b strings.Builder
			for _, p := range probes {
				fmt.Fprintf(&b, "probe %s: %d events\n", p.name, len(p.snapshot()))
			}
			t.Fatalf("timed out waiting for %s\n%s", what, b.String())
		}
		<-tick.C
	}
}

func isEv(name string) func(probeEvent) bool {
	return func(ev probeEvent) bool { return ev.Ev == name }
}
