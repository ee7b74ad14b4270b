package cli

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/megane-go/megane/store"
)

// unreachable is a Redis no test reaches: an argument error must come
// before any connection.
const unreachable = "redis://127.0.0.1:1/0"

// TestBadArgumentsAreUsageErrors: every numeric flag and argument of every
// command is checked before Redis is contacted (megane-cli events -c -5 once
// panicked with "slice bounds out of range").
func TestBadArgumentsAreUsageErrors(t *testing.T) {
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"events", "-c", "-5"}, "--count=-5 is outside 0..10000"},
		{[]string{"events", "--count", "10001"}, "--count=10001 is outside 0..10000"},
		{[]string{"events", "5"}, "want megane-cli events"},
		{[]string{"deadletter", "-c", "0"}, "--count=0 is outside 1..10000"},
		{[]string{"deadletter", "-c", "-1"}, "--count=-1 is outside 1..10000"},
		{[]string{"--timeout", "0s", "status"}, "--timeout=0s is outside 1ms..24h"},
		{[]string{"--timeout", "-1s", "nodes"}, "--timeout=-1s is outside"},
		{[]string{"--timeout", "25h", "stats"}, "--timeout=25h0m0s is outside"},
		{[]string{"restart", "--", "-1"}, `cluster id "-1" is not an integer in 0..1023`},
		{[]string{"restart", "1024"}, `cluster id "1024"`},
		{[]string{"restart", "x"}, `cluster id "x"`},
		{[]string{"restart", "0x1"}, `cluster id "0x1"`},
		{[]string{"restart"}, "want megane-cli restart <cluster id>"},
		{[]string{"restart", "1", "2"}, "want megane-cli restart <cluster id>"},
		{[]string{"rolling-restart", "now"}, "want megane-cli rolling-restart"},
		{[]string{"reshard", "16"}, "want megane-cli reshard [--shards N]"},
		{[]string{"reshard", "--shards", "-1"}, "--shards -1 is outside 0..65536"},
		{[]string{"reshard", "--shards", "65537"}, "--shards 65537 is outside 0..65536"},
		{[]string{"shutdown", "0"}, "want megane-cli shutdown"},
		{[]string{"status", "extra"}, "want megane-cli status"},
		{[]string{"namespaces", "x"}, "want megane-cli namespaces"},
		{[]string{"ping"}, "want megane-cli ping"},
		{[]string{"ping", "cluster:-1"}, `address "cluster:-1": cluster id "-1"`},
		{[]string{"ping", "cluster:99999999999999999999"}, `cluster id "99999999999999999999"`},
		{[]string{"eval"}, "want megane-cli eval"},
		{[]string{"eval", " "}, "the expression is empty"},
		{[]string{"eval", "-t", "cluster:-1", "1+1"}, `--target "cluster:-1"`},
		{[]string{"cache", "guild", "--", "-1"}, `"-1" is not a Discord id`},
		{[]string{"cache", "user", "0"}, `"0" is not a Discord id`},
		{[]string{"cache", "channel", "18446744073709551616"}, "is not a Discord id"},
		{[]string{"cache", "role"}, "want megane-cli cache role <id>"},
		{[]string{"cache", "counts", "1"}, "want megane-cli cache counts"},
		{[]string{"store", "buckets", "x"}, "want megane-cli store buckets"},
		{[]string{"store", "keys"}, "want megane-cli store keys <bucket>"},
		{[]string{"store", "get", "b"}, "want megane-cli store get <bucket> <key>"},
		{[]string{"store", "set", "b", "k"}, "want megane-cli store set"},
		{[]string{"store", "del", "b", "k", "x"}, "want megane-cli store del"},
		{[]string{"store", "incr", "b"}, "want megane-cli store incr"},
		{[]string{"store", "incr", "b", "k", "x"}, `delta "x" is not an integer`},
		{[]string{"store", "incr", "b", "k", "9223372036854775808"}, `delta "9223372036854775808"`},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			var out bytes.Buffer
			err := App(&out).RunContext(context.Background(), append([]string{"megane-cli", "--redis", unreachable}, tt.args...))
			if !errors.Is(err, ErrUsage) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %v, want ErrUsage mentioning %q", err, tt.want)
			}
		})
	}
}

// TestFlagParseErrors: values urfave/cli cannot parse are errors too, not
// panics or defaults.
func TestFlagParseErrors(t *testing.T) {
	for _, args := range [][]string{
		{"events", "-c", "abc"},
		{"events", "-c", "99999999999999999999"},
		{"restart", "-1"}, // taken for a flag: still an error, never cluster -1
		{"--timeout", "soon", "status"},
	} {
		var out bytes.Buffer
		if err := App(&out).RunContext(context.Background(), append([]string{"megane-cli", "--redis", unreachable}, args...)); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

// TestMainExitsNonZeroOnBadUsage runs the real Main (this test binary,
// re-executed) the way a shell does.
func TestMainExitsNonZeroOnBadUsage(t *testing.T) {
	if args := os.Getenv("MEGANE_CLI_TEST_MAIN"); args != "" {
		os.Args = append([]string{"megane-cli", "--redis", unreachable}, strings.Fields(args)...)
		Main()
		os.Exit(0)
	}
	for _, args := range []string{"events -c -5", "restart -- -1", "deadletter -c -1"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestMainExitsNonZeroOnBadUsage$")
		cmd.Env = append(os.Environ(), "MEGANE_CLI_TEST_MAIN="+args)
		out, err := cmd.CombinedOutput()
		var exit *exec.ExitError
		if !errors.As(err, &exit) || exit.ExitCode() != 1 {
			t.Errorf("%s: %v, want exit status 1\n%s", args, err, out)
		}
		if !strings.Contains(string(out), "megane-cli: bad usage: ") || strings.Contains(string(out), "panic") {
			t.Errorf("%s: output %q", args, out)
		}
	}
}

// TestNegativeCountsAgainstLiveRedis: with a Redis that answers (and events
// in it), negative counts are still usage errors, not a panic or a Redis
// error.
func TestNegativeCountsAgainstLiveRedis(t *testing.T) {
	addr, _ := seed(t)
	for _, args := range [][]string{{"events", "-c", "-5"}, {"deadletter", "-c", "-5"}, {"restart", "--", "-1"}} {
		if _, err := run(t, addr, args...); !errors.Is(err, ErrUsage) {
			t.Errorf("%v: %v, want ErrUsage", args, err)
		}
	}
	out, err := run(t, addr, "events", "-c", "0")
	if err != nil || out != "" {
		t.Errorf("events -c 0 = %q, %v; want nothing", out, err)
	}
	if out, err := run(t, addr, "events", "-c", "10000"); err != nil || !strings.Contains(out, "cluster_ready") {
		t.Errorf("events -c 10000 = %q, %v", out, err)
	}
}

// TestStoreSetRejectsInvalidUTF8: megane-cli store set hands the value to
// the store, which refuses bytes that are not UTF-8 instead of storing
// U+FFFD.
func TestStoreSetRejectsInvalidUTF8(t *testing.T) {
	addr, _ := seed(t)
	for _, args := range [][]string{
		{"store", "set", "b", "k", "bare\xffword"},
		{"store", "set", "b", "k", "\"json\xff\""},
		{"store", "set", "b", "\xff", "1"},
		{"store", "set", "\xff", "k", "1"},
	} {
		if _, err := run(t, addr, args...); !errors.Is(err, store.ErrInvalidUTF8) {
			t.Errorf("%q: %v, want store.ErrInvalidUTF8", args, err)
		}
	}
	if _, err := run(t, addr, "store", "get", "b", "k"); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("a rejected value was stored: %v", err)
	}
}

// FuzzArgumentParsers: the parsers of numeric arguments never panic and
// accept only values in their range.
func FuzzArgumentParsers(f *testing.F) {
	for _, s := range []string{"0", "-1", "1023", "1024", "+5", "0x1", "", " 1", "99999999999999999999", "18446744073709551615", "cluster:-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if id, err := parseClusterID(s); err == nil && (id < 0 || id > maxClusterID) {
			t.Fatalf("cluster id %q accepted as %d", s, id)
		} else if err != nil && !errors.Is(err, ErrUsage) {
			t.Fatalf("cluster id %q: %v is not ErrUsage", s, err)
		}
		if id, err := parseSnowflake(s); err == nil && id == 0 {
			t.Fatalf("snowflake %q accepted as 0", s)
		}
		_, _ = parseDelta(s)
		if err := checkNodeArg("address", s); err != nil && !errors.Is(err, ErrUsage) {
			t.Fatalf("address %q: %v is not ErrUsage", s, err)
		}
	})
}
