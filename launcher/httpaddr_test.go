package launcher

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"strings"
	"testing"

	"github.com/megane-go/megane/discordtest"
	"github.com/megane-go/megane/monitor"
)

func TestHTTPAddrConfig(t *testing.T) {
	for _, c := range []struct {
		env, want, bad string
	}{
		{"", monitor.DefaultAddr, ""},
		{"off", "off", ""},
		{"0.0.0.0:9190", "0.0.0.0:9190", ""},
		{"127.0.0.1:0", "127.0.0.1:0", ""},
		{"[::1]:9190", "[::1]:9190", ""},
		{"9190", "", "is not host:port"},
		{"127.0.0.1:70000", "", "outside 0..65535"},
		{"127.0.0.1:http", "", "outside 0..65535"},
	} {
		l, err := newFromEnv(Config{Worker: nopWorker{}, Token: discordtest.TokenFor(1)}, lookupMap(map[string]string{envHTTPAddr: c.env}))
		if c.bad != "" {
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), c.bad) || !strings.Contains(err.Error(), envHTTPAddr) {
				t.Errorf("%s=%q: %v, want an invalid config naming it (%s)", envHTTPAddr, c.env, err, c.bad)
			}
			continue
		}
		if err != nil {
			t.Errorf("%s=%q: %v", envHTTPAddr, c.env, err)
			continue
		}
		if l.cfg.HTTPAddr != c.want {
			t.Errorf("%s=%q: HTTPAddr %q, want %q", envHTTPAddr, c.env, l.cfg.HTTPAddr, c.want)
		}
	}
}

// TestTakenHTTPAddrOnlyWarns: the bot runs without its status page rather
// than not at all.
func TestTakenHTTPAddrOnlyWarns(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var logs bytes.Buffer
	l := &Launcher{cfg: Config{HTTPAddr: ln.Addr().String()}, log: slog.New(slog.NewTextHandler(&logs, nil))}
	var cleanups []func()
	l.startMonitor(&cleanups)
	if len(cleanups) != 0 || l.monitorURL != "" {
		t.Errorf("a server was started on a taken address")
	}
	if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "address already in use") {
		t.Errorf("no warning logged:\n%s", logs.String())
	}

	l = &Launcher{cfg: Config{HTTPAddr: "OFF"}, log: slog.New(slog.NewTextHandler(&logs, nil))}
	l.startMonitor(&cleanups)
	if len(cleanups) != 0 {
		t.Errorf("a server was started with %s=off", envHTTPAddr)
	}
}
