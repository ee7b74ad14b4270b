package launcher

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/megane-go/megane/discordtest"
	"github.com/megane-go/megane/internal/testctx"
)

// TestConfigBounds: every count and duration outside its range is an
// error, whether it comes from the environment or from the struct
// (MEGANE_HEARTBEAT_INTERVAL=1ns and MEGANE_STATS_INTERVAL=1ns were once
// accepted and flooded the logs); the bounds themselves are accepted.
func TestConfigBounds(t *testing.T) {
	good := Config{Worker: nopWorker{}, Token: discordtest.TokenFor(1)}
	tests := []struct {
		env      string
		set      func(*Config, string)
		low, bad string // bad is below low, or above it when low is empty
		high     string
		tooHigh  string
		want     string
	}{
		{envClusters, setCount(func(c *Config) *int { return &c.Clusters }), "1", "-1", "1024", "1025", "outside 1..1024 (Config.Clusters)"},
		{envShards, setCount(func(c *Config) *int { return &c.Shards }), "1", "-5", "65536", "65537", "outside 1..65536 (Config.Shards)"},
		{envGuildsPerShard, setCount(func(c *Config) *int { return &c.GuildsPerShard }), "100", "99", "2500", "2501", "outside 100..2500"},
		{envMaxConcurrency, setCount(func(c *Config) *int { return &c.MaxConcurrency }), "1", "-1", "1024", "1025", "outside 1..1024"},
		{envIdentifyReserve, setCount(func(c *Config) *int { return &c.IdentifyReserve }), "0", "-1", "100000", "100001", "outside 0..100000"},
		{envMaxRestarts, setCount(func(c *Config) *int { return &c.MaxRestarts }), "1", "-1", "1000", "1001", "outside 1..1000"},
		{envDemoGuilds, setCount(func(c *Config) *int { return &c.DemoGuilds }), "1", "-1", "100000", "100000000", "outside 1..100000"},
		{envIdentifyWindow, setDuration(func(c *Config) *time.Duration { return &c.IdentifyWindow }), "10ms", "1ms", "1m", "61s", "outside 10ms..1m"},
		{envHeartbeatInterval, setDuration(func(c *Config) *time.Duration { return &c.HeartbeatInterval }), "100ms", "1ns", "1m", "2m", "outside 100ms..1m (Config.HeartbeatInterval)"},
		{envReadyTimeout, setDuration(func(c *Config) *time.Duration { return &c.ReadyTimeout }), "1s", "999ms", "1h", "2h", "outside 1s..1h"},
		{envReadyTimeoutPerShard, setDuration(func(c *Config) *time.Duration { return &c.ReadyTimeoutPerShard }), "100ms", "-1s", "10m", "11m", "outside 100ms..10m"},
		{envRestartBackoff, setDuration(func(c *Config) *time.Duration { return &c.RestartBackoff }), "10ms", "1ms", "5m", "6m", "outside 10ms..5m"},
		{envMaxRestartBackoff, setDuration(func(c *Config) *time.Duration { return &c.MaxRestartBackoff }), "1s", "-1s", "1h", "2h", "outside 10ms..1h"},
		{envRestartWindow, setDuration(func(c *Config) *time.Duration { return &c.RestartWindow }), "1s", "1ms", "24h", "25h", "outside 1s..24h"},
		{envShutdownTimeout, setDuration(func(c *Config) *time.Duration { return &c.ShutdownTimeout }), "1s", "1ms", "10m", "1h", "outside 1s..10m"},
		{envStatsInterval, setDuration(func(c *Config) *time.Duration { return &c.StatsInterval }), "1s", "1ns", "1h", "1000h", "outside 1s..1h (Config.StatsInterval)"},
		{envDemoPingInterval, setDuration(func(c *Config) *time.Duration { return &c.DemoPingInterval }), "100ms", "1ns", "1h", "2h", "outside 100ms..1h"},
	}
	for _, tt := range tests {
		t.Run(tt.env, func(t *testing.T) {
			for _, v := range []string{tt.bad, tt.tooHigh} {
				_, err := newFromEnv(good, lookupMap(map[string]string{tt.env: v}))
				if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.env+"="+canonical(v)+" is "+tt.want) {
					t.Errorf("env %s=%s: error %v, want ErrInvalidConfig with %q", tt.env, v, err, tt.want)
				}
				cfg := good
				tt.set(&cfg, v)
				_, err = newFromEnv(cfg, lookupMap(nil))
				if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
					t.Errorf("struct %s: error %v, want ErrInvalidConfig with %q", v, err, tt.want)
				}
			}
			for _, v := range []string{tt.low, tt.high} {
				if _, err := newFromEnv(good, lookupMap(map[string]string{tt.env: v})); err != nil {
					t.Errorf("env %s=%s (at the bound): %v", tt.env, v, err)
				}
				cfg := good
				tt.set(&cfg, v)
				if _, err := newFromEnv(cfg, lookupMap(nil)); err != nil {
					t.Errorf("struct %s (at the bound): %v", v, err)
				}
			}
		})
	}

	t.Run("demo pings off", func(t *testing.T) {
		if _, err := newFromEnv(good, lookupMap(map[string]string{envDemoPingInterval: "-1s"})); err != nil {
			t.Errorf("a negative ping interval turns pings off: %v", err)
		}
	})
	t.Run("services", func(t *testing.T) {
		for _, s := range []ServiceSpec{
			{Worker: nopService{}, Copies: -1}, {Worker: nopService{}, Copies: 257},
			{Worker: nopService{}, ReadyTimeout: time.Nanosecond}, {Worker: nopService{}, ReadyTimeout: 2 * time.Hour},
		} {
			cfg := good
			cfg.Services = map[string]ServiceSpec{"svc": s}
			if _, err := newFromEnv(cfg, lookupMap(nil)); !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), `service "svc"`) {
				t.Errorf("service %+v: %v", s, err)
			}
		}
		cfg := good
		cfg.Services = map[string]ServiceSpec{"svc": {Worker: nopService{}, Copies: 256, ReadyTimeout: time.Hour}}
		if _, err := newFromEnv(cfg, lookupMap(nil)); err != nil {
			t.Errorf("service at the bounds: %v", err)
		}
	})
}

func setCount(field func(*Config) *int) func(*Config, string) {
	return func(c *Config, v string) {
		n, err := strconv.Atoi(v)
		if err != nil {
			panic(err)
		}
		*field(c) = n
	}
}

func setDuration(field func(*Config) *time.Duration) func(*Config, string) {
	return func(c *Config, v string) {
		d, err := time.ParseDuration(v)
		if err != nil {
			panic(err)
		}
		*field(c) = d
	}
}

// canonical writes a duration the way the error message does.
func canonical(v string) string {
	if d, err := time.ParseDuration(v); err == nil {
		return d.String()
	}
	return v
}

// TestConfigReportsEveryProblem: MEGANE_CLUSTERS=abc MEGANE_SHARDS=-1 once
// reported only the first problem; now values that do not parse, values
// out of range and an invalid log level are listed together.
func TestConfigReportsEveryProblem(t *testing.T) {
	_, err := newFromEnv(Config{}, lookupMap(map[string]string{
		envClusters:          "abc",
		envShards:            "-1",
		envLogLevel:          "loud",
		envHeartbeatInterval: "1ns",
		envStatsInterval:     "1ns",
		envDemoGuilds:        "100000000",
		envRole:              "master",
	}))
	if !errors.Is(err, ErrInvalidConfig) {
		t.Fatalf("error %v, want ErrInvalidConfig", err)
	}
	for _, want := range []string{
		`MEGANE_CLUSTERS="abc" is not an integer`,
		"MEGANE_SHARDS=-1 is outside",
		`MEGANE_LOG_LEVEL="loud" is not a log level`,
		"MEGANE_HEARTBEAT_INTERVAL=1ns is outside",
		"MEGANE_STATS_INTERVAL=1ns is outside",
		"MEGANE_DEMO_GUILDS=100000000 is outside 1..100000",
		"MEGANE_ROLE",
		"Worker is nil",
	} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not mention %q:\n%v", want, err)
		}
	}
}

func TestLogLevelFromEnv(t *testing.T) {
	for _, v := range []string{"debug", "INFO", "warn", "error", "warn+2"} {
		if _, err := newFromEnv(Config{Worker: nopWorker{}, Token: discordtest.TokenFor(1)}, lookupMap(map[string]string{envLogLevel: v})); err != nil {
			t.Errorf("MEGANE_LOG_LEVEL=%s: %v", v, err)
		}
	}
	l, err := newFromEnv(Config{Worker: nopWorker{}, Token: discordtest.TokenFor(1)}, lookupMap(map[string]string{envLogLevel: "warn"}))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if l.log.Enabled(ctx, slog.LevelInfo) || !l.log.Enabled(ctx, slog.LevelWarn) {
		t.Errorf("MEGANE_LOG_LEVEL=warn: the default logger does not log at warn only")
	}
}

// TestREADMEListsConfigRanges keeps the README configuration table in step
// with the ranges the code enforces.
func TestREADMEListsConfigRanges(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	rows := map[string]string{}
	for _, line := range strings.Split(string(readme), "\n") {
		if strings.HasPrefix(line, "| `") {
			for _, env := range strings.Split(strings.SplitN(line, "|", 3)[1], ",") {
				rows[strings.Trim(strings.TrimSpace(env), "`")] = line
			}
		}
	}
	var c Config
	for _, f := range c.intFields() {
		want := strconv.Itoa(f.min) + "–" + strconv.Itoa(f.max)
		if !strings.Contains(rows[f.env], want) {
			t.Errorf("README row of %s does not give the range %s: %q", f.env, want, rows[f.env])
		}
	}
	c.DemoPingInterval = time.Second
	for _, f := range c.durationFields() {
		want := shortDuration(f.min) + "–" + shortDuration(f.max)
		if !strings.Contains(rows[f.env], want) {
			t.Errorf("README row of %s does not give the range %s: %q", f.env, want, rows[f.env])
		}
	}
}

// TestDemoSetupStopsWhenCancelled: the launcher's context (which SIGINT and
// SIGTERM cancel) reaches the fake world's generation, so a signal during a
// big demo's setup ends it instead of waiting for (or running out of
// memory in) the generation.
func TestDemoSetupStopsWhenCancelled(t *testing.T) {
	cfg := Config{DemoGuilds: MaxDemoGuilds}
	done := make(chan error, 1)
	go func() {
		d, err := startDemo(testctx.NewPollLimited(20), &cfg, slog.New(slog.DiscardHandler))
		if d != nil {
			d.close()
			err = errors.Join(err, errors.New("the demo started"))
		}
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("startDemo = %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("startDemo still running 30 s after its context ended")
	}
}

// TestRecommendedShardsBounded: a shard count computed from Discord's
// recommendation is held to the same bound as a configured one.
func TestRecommendedShardsBounded(t *testing.T) {
	srv, err := discordtest.NewServer(discordtest.Options{Shards: maxShards/10 + 1, World: discordtest.WorldOptions{Guilds: -1}})
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	l, err := newFromEnv(Config{Worker: nopWorker{}, Token: srv.Token(), RESTURL: srv.RESTURL(), GuildsPerShard: 100}, lookupMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	err = l.planShards(context.Background())
	if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), "more than the 65536 a launcher runs") {
		t.Fatalf("planShards = %v, want ErrInvalidConfig about the shard count", err)
	}
}
