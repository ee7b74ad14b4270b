// Package testproc runs helper programs as child processes of integration
// tests.
//
// disgo's gateway has data races, so no real disgo client may run inside a
// race-enabled test binary. Tests that need one build a small program
// without -race ([Binary]) and run it as a child process ([Start]). The
// child reports what happens as JSON lines on stdout, which [Proc] collects;
// its stderr goes to a log file whose tail is logged when the test fails
// (or always, when MEGANE_TEST_CHILD_LOGS is set). Every child is killed
// when its test ends.
//
//	var bot = &testproc.Binary{Pkg: "./internal/testbot"}
//
//	func TestMain(m *testing.M) { os.Exit(testproc.Run(m, bot)) }
//
//	func TestSomething(t *testing.T) {
//		p := testproc.Start(t, testproc.Spec{Name: "bot", Path: bot.Path(t)})
//		...
//		evs := testproc.Events[myEvent](p)
//	}
package testproc

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// EnvChildLogs, when set to anything, logs the tail of every child's stderr
// even when the test passed.
const EnvChildLogs = "MEGANE_TEST_CHILD_LOGS"

// logTail is how much of a child's stderr log is shown.
const logTail = 8000

// pollInterval bounds how long [Proc.WaitFor] goes without checking its
// condition; new output and the exit wake it earlier.
const pollInterval = 20 * time.Millisecond

// ErrExited is returned by [Proc.WaitFor] when the process exited before the
// condition held.
var ErrExited = errors.New("process exited")

// Binary is a Go program built on first use, once per test binary, into a
// temporary directory. The zero value is not usable: set Pkg.
type Binary struct {
	// Pkg is the package to build, as given to go build, relative to the
	// test's package directory (e.g. "./internal/testbot").
	Pkg string
	// Race builds with -race. Off by default, and never right for
	// programs that run disgo.
	Race bool
	// LDFlags are passed to go build as -ldflags (e.g. "-X main.version=2"),
	// to build a second version of a program.
	LDFlags string

	once sync.Once
	dir  string
	path string
	err  error
}

// Build builds the program unless done already and returns its path. The
// error carries the output of go build.
func (b *Binary) Build() (string, error) {
	b.once.Do(func() {
		b.dir, b.err = os.MkdirTemp("", "testproc-"+filepath.Base(b.Pkg))
		if b.err != nil {
			return
		}
		b.path = filepath.Join(b.dir, filepath.Base(b.Pkg))
		args := []string{"build", "-buildvcs=false", "-o", b.path}
		if b.Race {
			args = append(args, "-race")
		}
		if b.LDFlags != "" {
			args = append(args, "-ldflags", b.LDFlags)
		}
		cmd := exec.Command(goTool(), append(args, b.Pkg)...)
		if flags, ok := os.LookupEnv("GOFLAGS"); ok {
			cmd.Env = append(os.Environ(), "GOFLAGS="+withoutRace(flags))
		}
		var out bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Run(); err != nil {
			b.err = fmt.Errorf("go %s: %w\n%s", strings.Join(cmd.Args[1:], " "), err, out.String())
		}
	})
	return b.path, b.err
}

// Path builds the program unless done already and returns its path; a
// failed build fails t.
func (b *Binary) Path(t testing.TB) string {
	t.Helper()
	p, err := b.Build()
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// Remove deletes the built program, if any.
func (b *Binary) Remove() {
	if b.dir != "" {
		_ = os.RemoveAll(b.dir)
	}
}

// Run is a TestMain body: it runs the tests, removes bins and returns the
// exit code for os.Exit.
func Run(m *testing.M, bins ...*Binary) int {
	code := m.Run()
	for _, b := range bins {
		b.Remove()
	}
	return code
}

// goTool is the go command of the toolchain running the tests, or the one
// on $PATH.
func goTool() string {
	if root := os.Getenv("GOROOT"); root != "" {
		p := filepath.Join(root, "bin", "go")
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	return "go"
}

// withoutRace drops -race from a GOFLAGS value so that a -race in the
// environment cannot leak into a build that must not race.
func withoutRace(flags string) string {
	f := strings.Fields(flags)
	f = slices.DeleteFunc(f, func(s string) bool { return s == "-race" || s == "--race" || strings.HasPrefix(s, "-race=") })
	return strings.Join(f, " ")
}

// Spec describes one child process.
type Spec struct {
	// Name names the process in messages and its log file.
	Name string
	// Path is the program to run, usually from [Binary.Path].
	Path string
	Args []string
	// Env is added to the test process's environment.
	Env []string
	// Dir is the working directory; empty means the test's.
	Dir string
	// Setpgid runs the process in a process group of its own; then
	// [Proc.Kill] and the cleanup kill the whole group.
	Setpgid bool
}

// Proc is a running (or exited) child process.
type Proc struct {
	t    testing.TB
	name string
	cmd  *exec.Cmd
	pgid bool
	logf string

	mu      sync.Mutex
	lines   [][]byte
	decoded map[reflect.Type]any
	changed chan struct{} // closed and replaced on each new line

	exited chan struct{}
	err    error // valid once exited is closed
}

// Start runs the process described by s. Its stdout is collected line by
// line, its stderr goes to a log file in t's temporary directory. When t
// ends, the process is killed if still running, and the tail of its log is
// logged if t failed or MEGANE_TEST_CHILD_LOGS is set. A process that cannot
// start fails t.
func Start(t testing.TB, s Spec) *Proc {
	t.Helper()
	logf := filepath.Join(t.TempDir(), strings.ReplaceAll(s.Name, string(filepath.Separator), "_")+".log")
	lf, err := os.Create(logf)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(s.Path, s.Args...)
	cmd.Env = append(os.Environ(), s.Env...)
	cmd.Dir = s.Dir
	cmd.Stderr = lf
	if s.Setpgid {
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		_ = lf.Close()
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		_ = lf.Close()
		t.Fatalf("start %s: %v", s.Name, err)
	}
	p := &Proc{
		t: t, name: s.Name, cmd: cmd, pgid: s.Setpgid, logf: logf,
		decoded: map[reflect.Type]any{},
		changed: make(chan struct{}),
		exited:  make(chan struct{}),
	}
	go func() {
		r := bufio.NewReader(stdout)
		for {
			line, err := r.ReadBytes('\n')
			if line = bytes.TrimRight(line, "\r\n"); len(line) > 0 {
				p.mu.Lock()
				p.lines = append(p.lines, line)
				close(p.changed)
				p.changed = make(chan struct{})
				p.mu.Unlock()
			}
			if err != nil {
				break
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		p.err = cmd.Wait()
		_ = lf.Close()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			p.kill()
			<-p.exited
		}
		if t.Failed() || os.Getenv(EnvChildLogs) != "" {
			p.logTail()
		}
	})
	return p
}

func (p *Proc) logTail() {
	b, _ := os.ReadFile(p.logf)
	if len(b) > logTail {
		b = b[len(b)-logTail:]
	}
	p.t.Logf("--- %s stderr (tail) ---\n%s", p.name, b)
}

// Name is the name given in the Spec.
func (p *Proc) Name() string { return p.name }

// Pid is the process's id.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// LogPath is the file that holds the process's stderr.
func (p *Proc) LogPath() string { return p.logf }

// Exited is closed once the process has exited and its output is read.
func (p *Proc) Exited() <-chan struct{} { return p.exited }

// Err is the process's exit error (nil for a clean exit) once [Proc.Exited]
// is closed, and nil before.
func (p *Proc) Err() error {
	select {
	case <-p.exited:
		return p.err
	default:
		return nil
	}
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Kill sends SIGKILL (to the process group when Spec.Setpgid) and waits
// until the process is gone.
func (p *Proc) Kill() {
	p.kill()
	<-p.exited
}

func (p *Proc) kill() {
	if p.pgid {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		return
	}
	_ = p.cmd.Process.Kill()
}

// Stop sends sig and waits up to d for the exit, returning [Proc.Err]. The
// test fails at once when the process outlives d.
func (p *Proc) Stop(sig os.Signal, d time.Duration) error {
	p.t.Helper()
	_ = p.Signal(sig)
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-p.exited:
		return p.err
	case <-timer.C:
		p.t.Fatalf("%s did not exit within %s of %s", p.name, d, sig)
		return nil
	}
}

// Lines returns every non-empty stdout line so far.
func (p *Proc) Lines() []string {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]string, len(p.lines))
	for i, l := range p.lines {
		out[i] = string(l)
	}
	return out
}

// Raw returns the stdout lines so far that are JSON, in order.
func (p *Proc) Raw() []json.RawMessage {
	p.mu.Lock()
	defer p.mu.Unlock()
	var out []json.RawMessage
	for _, l := range p.lines {
		if json.Valid(l) {
			out = append(out, json.RawMessage(l))
		}
	}
	return out
}

// decodedLines is the lines of a Proc decoded into T so far.
type decodedLines[T any] struct {
	next int // the first line not decoded yet
	vals []T
}

// Events returns the stdout lines so far that decode into T, in order;
// other lines are skipped. Each line is decoded once per type, so polling
// is cheap.
func Events[T any](p *Proc) []T {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := reflect.TypeFor[T]()
	d, _ := p.decoded[key].(*decodedLines[T])
	if d == nil {
		d = &decodedLines[T]{}
		p.decoded[key] = d
	}
	for ; d.next < len(p.lines); d.next++ {
		var v T
		if json.Unmarshal(p.lines[d.next], &v) == nil {
			d.vals = append(d.vals, v)
		}
	}
	return slices.Clone(d.vals)
}

// WaitFor calls cond until it holds, on every new stdout line and at least
// every 20ms. It returns nil once cond holds, an error wrapping [ErrExited]
// when the process exited first (cond is checked once more after the exit),
// or ctx's error.
func (p *Proc) WaitFor(ctx context.Context, cond func() bool) error {
	tick := time.NewTicker(pollInterval)
	defer tick.Stop()
	for {
		p.mu.Lock()
		changed := p.changed
		p.mu.Unlock()
		if cond() {
			return nil
		}
		select {
		case <-p.exited:
			if cond() {
				return nil
			}
			return fmt.Errorf("%s: %w (%v)", p.name, ErrExited, p.err)
		case <-ctx.Done():
			if cond() {
				return nil
			}
			return ctx.Err()
		case <-changed:
		case <-tick.C:
		}
	}
}
