package e2e

import (
	"context"
	"errors"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/megane-go/megane/internal/testproc"
)

// e2ebot and launcherbot are built without -race: disgo's gateway races by
// design.
var (
	e2ebot = &testproc.Binary{Pkg: "./internal/e2ebot"}
	// launcherbot is the launcher's test bot: launcher.Run with real
	// cluster processes and the service "echo" (TESTBOT_SERVICE=1).
	launcherbot = &testproc.Binary{Pkg: "../launcher/internal/testbot"}
)

func TestMain(m *testing.M) {
	os.Exit(testproc.Run(m, e2ebot, launcherbot))
}

// procEvent is one JSON line of an e2ebot process.
type procEvent struct {
	Ev  string `json:"ev"`
	Err string `json:"err"`
}

// proc is one running e2ebot.
type proc struct {
	*testproc.Proc
	t    *testing.T
	name string
}

// startProc runs e2ebot with env added to the test's environment. Its
// stderr goes to a file shown when the test fails.
func startProc(t *testing.T, name string, env ...string) *proc {
	t.Helper()
	p := testproc.Start(t, testproc.Spec{Name: name, Path: e2ebot.Path(t), Env: env})
	return &proc{Proc: p, t: t, name: name}
}

func (p *proc) count(ev string) int {
	n := 0
	for _, e := range testproc.Events[procEvent](p.Proc) {
		if e.Ev == ev {
			n++
		}
	}
	return n
}

func (p *proc) errors() []string {
	var out []string
	for _, e := range testproc.Events[procEvent](p.Proc) {
		if e.Ev == "error" {
			out = append(out, e.Err)
		}
	}
	return out
}

// waitReady waits for the process's ready line, failing early when it died.
func (p *proc) waitReady(d time.Duration) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	switch err := p.WaitFor(ctx, func() bool { return p.count("ready") > 0 }); {
	case errors.Is(err, testproc.ErrExited):
		p.t.Fatalf("%s exited (%v) before it was ready; errors: %v", p.name, p.Err(), p.errors())
	case err != nil:
		p.t.Fatalf("%s not ready after %s; errors: %v", p.name, d, p.errors())
	}
}

// kill SIGKILLs the process and waits for it to be gone.
func (p *proc) kill() {
	p.t.Helper()
	p.Kill()
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop(d time.Duration) {
	p.t.Helper()
	err := p.Stop(syscall.SIGTERM, d)
	if err != nil || p.count("stopped") != 1 {
		p.t.Errorf("%s: exit %v, errors %v", p.name, err, p.errors())
	}
}
