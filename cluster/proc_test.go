package cluster_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/discordtest"
	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/keyspace"
)

// The integration tests run real disgo clients, which race, so they live in
// child processes built without -race (cluster/internal/testcluster).

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
	buildDir  string
)

func TestMain(m *testing.M) {
	code := m.Run()
	if buildDir != "" {
		_ = os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// testclusterBin builds the child program once per test binary.
func testclusterBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "testcluster")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(buildDir, "testcluster")
		cmd := exec.Command("go", "build", "-o", binPath, "./internal/testcluster")
		// Never -race: disgo's gateway races by design.
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			buildErr = fmt.Errorf("go build testcluster: %w\n%s", err, out.String())
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// procEvent is one JSON line of a testcluster process.
type procEvent struct {
	Ev      string `json:"ev"`
	Shard   int    `json:"shard"`
	Seq     int    `json:"seq"`
	Content string `json:"content"`
	Err     string `json:"err"`
	Len     int    `json:"len"`
}

type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	logf string

	mu     sync.Mutex
	events []procEvent
	exited chan struct{}
	err    error
}

type procConfig struct {
	ns          string
	clusterID   int
	shards      string
	shardCount  int
	maxConc     int
	limiter     string
	windowMS    int
	syncMS      int
	redisURL    string
	srv         *discordtest.Server
	extraEnvVar []string
}

func startProc(t *testing.T, name string, c procConfig) *proc {
	t.Helper()
	bin := testclusterBin(t)
	logf := filepath.Join(t.TempDir(), name+".log")
	lf, err := os.Create(logf)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = append(os.Environ(),
		"TC_REDIS_URL="+c.redisURL,
		"TC_NAMESPACE="+c.ns,
		"TC_CLUSTER_ID="+strconv.Itoa(c.clusterID),
		"TC_SHARDS="+c.shards,
		"TC_SHARD_COUNT="+strconv.Itoa(c.shardCount),
		"TC_MAX_CONCURRENCY="+strconv.Itoa(c.maxConc),
		"TC_TOKEN="+c.srv.Token(),
		"TC_REST_URL="+c.srv.RESTURL(),
		"TC_LIMITER="+c.limiter,
		"TC_IDENTIFY_WINDOW_MS="+strconv.Itoa(c.windowMS),
		"TC_SYNC_MS="+strconv.Itoa(c.syncMS),
	)
	cmd.Env = append(cmd.Env, c.extraEnvVar...)
	cmd.Stderr = lf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, name: name, cmd: cmd, logf: logf, exited: make(chan struct{})}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			var ev procEvent
			if json.Unmarshal(sc.Bytes(), &ev) != nil {
				continue
			}
			p.mu.Lock()
			p.events = append(p.events, ev)
			p.mu.Unlock()
		}
		p.err = cmd.Wait()
		_ = lf.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			_ = cmd.Process.Kill()
			<-p.exited
		}
		if t.Failed() || os.Getenv("MEGANE_TEST_CHILD_LOGS") != "" {
			b, _ := os.ReadFile(logf)
			if len(b) > 8000 {
				b = b[len(b)-8000:]
			}
			t.Logf("--- %s stderr (tail) ---\n%s", name, b)
		}
	})
	return p
}

func (p *proc) count(ev string) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, e := range p.events {
		if e.Ev == ev {
			n++
		}
	}
	return n
}

func (p *proc) all(ev string) []procEvent {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []procEvent
	for _, e := range p.events {
		if e.Ev == ev {
			out = append(out, e)
		}
	}
	return out
}

func (p *proc) errors() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []string
	for _, e := range p.events {
		if e.Ev == "error" {
			out = append(out, e.Err)
		}
	}
	return out
}

// waitFor polls cond until it holds or d passes; it fails the test early
// when the process died.
func (p *proc) waitFor(what string, d time.Duration, cond func() bool) {
	p.t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		select {
		case <-p.exited:
			if cond() {
				return
			}
			p.t.Fatalf("%s exited (%v) while waiting for %s; errors: %v", p.name, p.err, what, p.errors())
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("%s: timed out after %s waiting for %s; errors: %v", p.name, d, what, p.errors())
		}
	}
}

func (p *proc) waitReady(d time.Duration) {
	p.t.Helper()
	p.waitFor("ready", d, func() bool { return p.count("ready") > 0 })
}

// stop sends sig and waits for the exit.
func (p *proc) stop(sig syscall.Signal, d time.Duration) error {
	p.t.Helper()
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.exited:
		return p.err
	case <-time.After(d):
		p.t.Fatalf("%s did not exit within %s of %s", p.name, d, sig)
		return nil
	}
}

// newFake starts a fake Discord for the test.
func newFake(t *testing.T, o discordtest.Options) *discordtest.Server {
	t.Helper()
	srv, err := discordtest.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

func waitSrv(t *testing.T, srv *discordtest.Server, what string, d time.Duration, cond func(*discordtest.Server) bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	if err := srv.WaitFor(ctx, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// replies counts the "seen <content>" messages the clusters posted, by content.
func replies(srv *discordtest.Server) map[string]int {
	out := map[string]int{}
	for _, m := range srv.Messages() {
		if c, ok := strings.CutPrefix(m.Content, "seen "); ok {
			out[c]++
		}
	}
	return out
}

// realRedis returns a client of the integration Redis, its URL and a fresh
// keyspace.
func realRedis(t *testing.T) (redis.UniversalClient, string, keyspace.Keyspace) {
	t.Helper()
	url := testredis.URL(t)
	rdb, ks := testredis.Real(t)
	return rdb, url, ks
}
