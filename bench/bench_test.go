package main

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/megane-go/megane/internal/testproc"
)

// bin is the bench itself, built without the race detector like every
// program whose children run disgo.
var bin = &testproc.Binary{Pkg: "../bench"}

func TestMain(m *testing.M) { os.Exit(testproc.Run(m, bin)) }

// TestIPCRowJSON runs the command as a user would, one small row, and
// reads its JSON report: the command starts its own redis-server and
// stops it.
func TestIPCRowJSON(t *testing.T) {
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("SKIPPED: redis-server is not installed (scripts/test installs it)")
	}
	cmd := exec.Command(bin.Path(t), "-only", "ipc", "-n", "200", "-d", "200ms", "-inflight", "4", "-json")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("bench: %v\nstderr:\n%s", err, stderr.String())
	}
	var rep Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatalf("report is not JSON: %v\n%s", err, stdout.String())
	}
	if len(rep.FailedRows) > 0 || rep.Redis == "" || rep.Cores == 0 {
		t.Fatalf("report %+v", rep)
	}
	names := map[string]Figure{}
	for _, f := range rep.Figures {
		if f.Row != "ipc" {
			t.Errorf("figure of row %q in an -only ipc run", f.Row)
		}
		names[f.Name] = f
	}
	call, ok := names["cluster→service call, sequential"]
	if !ok || call.Value <= 0 || call.P99 < call.Value || call.BaselineValue <= 0 || call.Met == nil {
		t.Errorf("call figure %+v", call)
	}
	if !strings.Contains(stderr.String(), "row ipc done") {
		t.Errorf("no progress on stderr:\n%s", stderr.String())
	}
}

func TestUnknownRowIsRefused(t *testing.T) {
	cmd := exec.Command(bin.Path(t), "-only", "nosuchrow")
	out, err := cmd.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), `unknown row "nosuchrow"`) {
		t.Fatalf("err %v, output:\n%s", err, out)
	}
}

func TestTable(t *testing.T) {
	rep := Report{Date: "2026-12-02 12:00 UTC", Machine: "linux/amd64", Cores: 2, Redis: "7.0.15", LoadAvg: "1.0", Elapsed: "1s",
		Figures: []Figure{
			{Row: "ipc", Name: "call", Value: 120.5, P99: 300, Unit: "µs", Baseline: "PING p50", BaselineValue: 50, Ratio: 2.41, Target: "p50 ≤ 2.5× PING", Met: met(true)},
			{Row: "cache", Name: "ingest", Value: 123456, Unit: "/s", Target: "≥ 0.5×", Met: met(false)},
			{Row: "fleet", Name: "ready", Value: 1.5, Unit: "s"},
		},
		Notes: []string{"a note"}}
	var b bytes.Buffer
	if err := writeTable(&b, rep); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		"| ipc   | call   | 120.5 µs   | 300.0 µs | PING p50 50.0 µs    | 2.41× | p50 ≤ 2.5× PING | met     |",
		"| cache | ingest | 123 456 /s |",
		"| not met |",
		"| 1.5s ",
		"a note",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
