package launcher

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/megane-go/megane/discordtest"
	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/redisipc"
)

func TestEvalConfig(t *testing.T) {
	good := Config{Worker: nopWorker{}, Token: discordtest.TokenFor(1)}
	l, err := newFromEnv(good, lookupMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	if !l.cfg.evalLimits(RoleLauncher).Disabled || l.cfg.evalLimits(RoleCluster).Disabled || l.cfg.evalLimits(RoleService).Disabled {
		t.Errorf("default: eval must be off on the launcher only: %+v", l.cfg)
	}
	l, err = newFromEnv(good, lookupMap(map[string]string{
		envEvalLauncher: "true", envEvalServices: "false", envEvalTimeout: "2s",
		envEvalMaxMemory: "32MiB", envEvalMaxNodes: "500", envEvalMaxConcurrent: "3",
	}))
	if err != nil {
		t.Fatal(err)
	}
	want := redisipc.EvalLimits{Timeout: 2 * time.Second, MaxMemory: 32 << 20, MaxNodes: 500, MaxConcurrent: 3}
	if got := l.cfg.evalLimits(RoleLauncher); got != want {
		t.Errorf("launcher %+v, want %+v", got, want)
	}
	if got := l.cfg.evalLimits(RoleCluster); got != want {
		t.Errorf("cluster %+v, want %+v", got, want)
	}
	if !l.cfg.evalLimits(RoleService).Disabled {
		t.Errorf("MEGANE_EVAL_SERVICES=false left services on")
	}
	l, err = newFromEnv(Config{Worker: nopWorker{}, Token: discordtest.TokenFor(1), EvalLauncher: true},
		lookupMap(map[string]string{envEval: "false", envEvalMaxMemory: "1048576"}))
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range []Role{RoleLauncher, RoleCluster, RoleService} {
		if lim := l.cfg.evalLimits(r); !lim.Disabled || lim.MaxMemory != 1<<20 {
			t.Errorf("MEGANE_EVAL=false: %s %+v", r, lim)
		}
	}
	// Every bad eval setting is reported at once: unreadable variables,
	// then values out of range.
	for _, tc := range []struct {
		cfg  Config
		env  map[string]string
		want []string
	}{
		{good, map[string]string{envEvalLauncher: "yes please", envEvalTimeout: "5", envEvalMaxMemory: "lots", envEvalMaxNodes: "x"},
			[]string{envEvalLauncher, envEvalTimeout, envEvalMaxMemory, envEvalMaxNodes}},
		{Config{Worker: nopWorker{}, Token: discordtest.TokenFor(1), Eval: redisipc.EvalLimits{MaxNodes: -1, Timeout: -time.Second}},
			map[string]string{envEvalMaxConcurrent: "-2"},
			[]string{envEvalMaxNodes, envEvalTimeout, envEvalMaxConcurrent}},
	} {
		_, err = newFromEnv(tc.cfg, lookupMap(tc.env))
		if !errors.Is(err, ErrInvalidConfig) {
			t.Fatalf("%v, want ErrInvalidConfig", err)
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("%v does not mention %s", err, w)
			}
		}
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "1024": 1024, "64MiB": 64 << 20, "64 MB": 64 << 20, "2GiB": 2 << 30, "8KiB": 8 << 10} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "x", "-1", "1.5MiB", "99999999999GiB"} {
		if _, err := parseBytes(bad); err == nil {
			t.Errorf("parseBytes(%q) accepted", bad)
		}
	}
}

// The launcher's own node refuses eval unless EvalLauncher is set, and
// still serves its ops.
func TestLauncherEvalOffByDefault(t *testing.T) {
	for _, enabled := range []bool{false, true} {
		_, rdb := testredis.Mini(t)
		ks := keyspace.MustNew(testredis.Namespace(t))
		l, err := newFromEnv(Config{Worker: nopWorker{}, Token: discordtest.TokenFor(1), EvalLauncher: enabled}, lookupMap(nil))
		if err != nil {
			t.Fatal(err)
		}
		l.rdb, l.ks = rdb, ks
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		var cleanups []func()
		if err := l.startIPC(ctx, &cleanups); err != nil {
			t.Fatal(err)
		}
		cli, err := redisipc.New(ctx, redisipc.Options{Redis: rdb, Keys: ks, Addr: "cli:test"})
		if err != nil {
			t.Fatal(err)
		}
		out, err := cli.Call(ctx, LauncherAddr, redisipc.OpEval, []byte(`addr + "!"`))
		if enabled {
			if err != nil || string(out) != `"launcher!"` {
				t.Errorf("enabled: %s, %v", out, err)
			}
		} else {
			var re *redisipc.RemoteError
			if !errors.As(err, &re) || !errors.Is(err, redisipc.ErrEvalLimit) || !strings.Contains(err.Error(), "disabled") {
				t.Errorf("default: %s, %v; want a disabled RemoteError", out, err)
			}
		}
		if _, err := cli.Call(ctx, LauncherAddr, redisipc.OpPing, nil); err != nil {
			t.Errorf("ping: %v", err)
		}
		_ = cli.Close(ctx)
		for _, f := range cleanups {
			f()
		}
		cancel()
	}
}
