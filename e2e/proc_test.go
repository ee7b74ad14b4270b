package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"
)

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

// botBin builds e2ebot once per test binary, never with -race: disgo's
// gateway races by design.
func botBin(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		buildDir, buildErr = os.MkdirTemp("", "e2ebot")
		if buildErr != nil {
			return
		}
		binPath = filepath.Join(buildDir, "e2ebot")
		cmd := exec.Command("go", "build", "-o", binPath, "./internal/e2ebot")
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			buildErr = fmt.Errorf("go build e2ebot: %w\n%s", err, out.String())
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// procEvent is one JSON line of an e2ebot process.
type procEvent struct {
	Ev  string `json:"ev"`
	Err string `json:"err"`
}

// proc is one running e2ebot.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd

	mu     sync.Mutex
	events []procEvent
	exited chan struct{}
	err    error
}

// startProc runs e2ebot with env added to the test's environment. Its
// stderr goes to a file shown when the test fails.
func startProc(t *testing.T, name string, env ...string) *proc {
	t.Helper()
	logf := filepath.Join(t.TempDir(), name+".log")
	lf, err := os.Create(logf)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(botBin(t))
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = lf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &proc{t: t, name: name, cmd: cmd, exited: make(chan struct{})}
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

// waitReady waits for the process's ready line, failing early when it died.
func (p *proc) waitReady(d time.Duration) {
	p.t.Helper()
	deadline := time.After(d)
	for p.count("ready") == 0 {
		select {
		case <-p.exited:
			p.t.Fatalf("%s exited (%v) before it was ready; errors: %v", p.name, p.err, p.errors())
		case <-deadline:
			p.t.Fatalf("%s not ready after %s; errors: %v", p.name, d, p.errors())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// kill SIGKILLs the process and waits for it to be gone.
func (p *proc) kill() {
	p.t.Helper()
	_ = p.cmd.Process.Kill()
	<-p.exited
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop(d time.Duration) {
	p.t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(d):
		p.t.Fatalf("%s did not exit within %s of SIGTERM", p.name, d)
	}
	if p.err != nil || p.count("stopped") != 1 {
		p.t.Errorf("%s: exit %v, errors %v", p.name, p.err, p.errors())
	}
}
