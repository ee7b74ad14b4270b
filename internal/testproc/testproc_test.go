package testproc_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/megane-go/megane/internal/testproc"
)

// The test binary doubles as the child: with envChild set it prints a few
// lines and then waits for a signal or exits.
const envChild = "TESTPROC_CHILD"

// exitTerminated is the child's exit code after SIGTERM, as a shell reports
// a process killed by it (128+15).
const exitTerminated = 143

func TestMain(m *testing.M) {
	switch os.Getenv(envChild) {
	case "":
		os.Exit(m.Run())
	case "lines":
		// Subscribe before the first line, so that a parent that saw
		// it can stop the child with SIGTERM. Blocking on the signal
		// channel (not select {}, which the runtime aborts as a
		// deadlock) keeps the child alive until then.
		term := make(chan os.Signal, 1)
		signal.Notify(term, syscall.SIGTERM)
		// The log line goes first: stderr is a file, so once the
		// parent has seen the last stdout line the log is complete.
		fmt.Fprintln(os.Stderr, "to the log")
		fmt.Println(`{"ev":"ready","n":1}`)
		fmt.Println("READY")
		fmt.Println(`{"ev":"tick","n":2}`)
		<-term
		os.Exit(exitTerminated)
	case "fail":
		fmt.Fprintln(os.Stderr, "failing")
		os.Exit(3)
	}
}

type event struct {
	Ev string `json:"ev"`
	N  int    `json:"n"`
}

func start(t *testing.T, mode string, setpgid bool) *testproc.Proc {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	return testproc.Start(t, testproc.Spec{
		Name: mode, Path: exe, Args: []string{"-test.run=^$"},
		Env: []string{envChild + "=" + mode}, Setpgid: setpgid,
	})
}

func wait(t *testing.T, p *testproc.Proc, cond func() bool) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return p.WaitFor(ctx, cond)
}

func TestLinesAndEvents(t *testing.T) {
	p := start(t, "lines", false)
	if err := wait(t, p, func() bool { return len(p.Lines()) == 3 }); err != nil {
		t.Fatal(err)
	}
	evs := testproc.Events[event](p)
	if len(evs) != 2 || evs[0] != (event{"ready", 1}) || evs[1] != (event{"tick", 2}) {
		t.Fatalf("events %+v", evs)
	}
	if raw := p.Raw(); len(raw) != 2 {
		t.Fatalf("raw %q", raw)
	}
	err := p.Stop(syscall.SIGTERM, 10*time.Second)
	var ee interface{ ExitCode() int }
	if !errors.As(err, &ee) || ee.ExitCode() != exitTerminated {
		t.Fatalf("SIGTERM: exit %v, want status %d", err, exitTerminated)
	}
	b, err := os.ReadFile(p.LogPath())
	if err != nil || string(b) != "to the log\n" {
		t.Fatalf("log %q, %v", b, err)
	}
}

func TestWaitForExited(t *testing.T) {
	p := start(t, "fail", false)
	err := wait(t, p, func() bool { return false })
	if !errors.Is(err, testproc.ErrExited) {
		t.Fatalf("WaitFor: %v, want ErrExited", err)
	}
	var ee interface{ ExitCode() int }
	if !errors.As(p.Err(), &ee) || ee.ExitCode() != 3 {
		t.Fatalf("Err %v, want exit status 3", p.Err())
	}
}

func TestKillGroup(t *testing.T) {
	p := start(t, "lines", true)
	if err := wait(t, p, func() bool { return len(p.Lines()) > 0 }); err != nil {
		t.Fatal(err)
	}
	p.Kill()
	select {
	case <-p.Exited():
	default:
		t.Fatal("Kill returned before the exit")
	}
	if p.Err() == nil {
		t.Fatal("killed process exited cleanly")
	}
}

func TestWaitForDeadline(t *testing.T) {
	p := start(t, "lines", false)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := p.WaitFor(ctx, func() bool { return false }); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitFor: %v", err)
	}
}
