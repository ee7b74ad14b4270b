package launcher

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/megane-go/megane/cluster"
	"github.com/megane-go/megane/discordtest"
	"github.com/megane-go/megane/services"
	"github.com/megane-go/megane/shardmap"
)

type nopWorker struct{}

func (nopWorker) Launch(context.Context, *cluster.Cluster) error { return nil }

type nopService struct{}

func (nopService) Launch(context.Context, *services.Service) error { return nil }
func (nopService) HandleCommand(context.Context, *services.Service, services.Command) (any, error) {
	return nil, nil
}

func lookupMap(m map[string]string) func(string) (string, bool) {
	return func(k string) (string, bool) { v, ok := m[k]; return v, ok }
}

func TestEnvOverridesStruct(t *testing.T) {
	token := discordtest.TokenFor(123)
	l, err := newFromEnv(Config{Worker: nopWorker{}, Clusters: 2, Shards: 8, Namespace: "mine"}, lookupMap(map[string]string{
		envToken:             token,
		envClusters:          "4",
		envShards:            "", // empty counts as unset (docker compose "${VAR:-}")
		envRESTURL:           "http://127.0.0.1:1/api/v10/",
		envHeartbeatInterval: "250ms",
		envDemo:              "false",
	}))
	if err != nil {
		t.Fatal(err)
	}
	c := l.cfg
	if c.Token != token || c.Clusters != 4 || c.Shards != 8 || c.Namespace != "mine" ||
		c.RESTURL != "http://127.0.0.1:1/api/v10" || c.HeartbeatInterval != 250*time.Millisecond || !c.DisableDemo {
		t.Errorf("config %+v", c)
	}
	if c.RestartBackoff != DefaultRestartBackoff || c.MaxRestarts != DefaultMaxRestarts || c.ShutdownTimeout != DefaultShutdownTimeout {
		t.Errorf("defaults not applied: %+v", c)
	}
	if l.Role() != RoleLauncher {
		t.Errorf("role %q", l.Role())
	}
}

func TestInvalidConfig(t *testing.T) {
	good := Config{Worker: nopWorker{}, Token: discordtest.TokenFor(1)}
	tests := []struct {
		name string
		cfg  func(*Config)
		env  map[string]string
		want string
	}{
		{"no worker", func(c *Config) { c.Worker = nil }, nil, "Worker is nil"},
		{"bad token", func(c *Config) { c.Token = "not-a-token" }, nil, "not a bot token"},
		{"no token, no demo", func(c *Config) { c.Token = ""; c.DisableDemo = true }, nil, "DISCORD_TOKEN is not set"},
		{"bad namespace", func(c *Config) { c.Namespace = "a b" }, nil, "MEGANE_NAMESPACE"},
		{"bad redis url", func(c *Config) { c.RedisURL = "http://x" }, nil, "REDIS_URL"},
		{"bad status webhook", nil, map[string]string{envStatusWebhook: "discord.com/webhooks"}, "MEGANE_STATUS_WEBHOOK"},
		{"more clusters than shards", func(c *Config) { c.Clusters, c.Shards = 5, 4 }, nil, "a cluster needs at least one shard"},
		{"negative shards", func(c *Config) { c.Shards = -1 }, nil, "MEGANE_SHARDS=-1 is outside 1..65536 (Config.Shards)"},
		{"gateway with query", func(c *Config) { c.GatewayURL = "wss://x/?v=10" }, nil, "must not contain a query"},
		{"gateway not ws", func(c *Config) { c.GatewayURL = "http://x" }, nil, "ws:// or wss://"},
		{"rest not http", func(c *Config) { c.RESTURL = "discord.com" }, nil, "MEGANE_DISCORD_REST_URL"},
		{"bad service name", func(c *Config) { c.Services = map[string]ServiceSpec{"a:b": {Worker: nopService{}}} }, nil, "service name"},
		{"service without worker", func(c *Config) { c.Services = map[string]ServiceSpec{"x": {}} }, nil, "has no Worker"},
		{"env not a number", nil, map[string]string{envMaxConcurrency: "lots"}, `MEGANE_MAX_CONCURRENCY="lots" is not an integer`},
		{"env not a duration", nil, map[string]string{envRestartBackoff: "1"}, `MEGANE_RESTART_BACKOFF="1" is not a duration`},
		{"env not a bool", nil, map[string]string{envLargeBotSharding: "maybe"}, "is not a boolean"},
		{"bad role", nil, map[string]string{envRole: "master"}, "MEGANE_ROLE"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := good
			if tt.cfg != nil {
				tt.cfg(&cfg)
			}
			_, err := newFromEnv(cfg, lookupMap(tt.env))
			if !errors.Is(err, ErrInvalidConfig) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %v, want ErrInvalidConfig mentioning %q", err, tt.want)
			}
		})
	}
	// Every problem is reported at once.
	_, err := newFromEnv(Config{Shards: -1}, lookupMap(map[string]string{envClusters: "x", envShutdownTimeout: "y"}))
	for _, want := range []string{envClusters, envShutdownTimeout} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("error %v does not mention %s", err, want)
		}
	}
}

func TestSplitShards(t *testing.T) {
	tests := []struct {
		shards, clusters int
		want             string
	}{
		{12, 3, "0-3|4-7|8-11"},
		{10, 3, "0-3|4-6|7-9"},
		{3, 3, "0|1|2"},
		{16, 1, "0-15"},
	}
	for _, tt := range tests {
		var parts []string
		for _, r := range splitShards(tt.shards, tt.clusters) {
			parts = append(parts, shardmap.FormatRanges(r))
		}
		if got := strings.Join(parts, "|"); got != tt.want {
			t.Errorf("splitShards(%d, %d) = %s, want %s", tt.shards, tt.clusters, got, tt.want)
		}
	}
}

func TestShardCount(t *testing.T) {
	tests := []struct {
		recommended, guildsPerShard int
		large                       bool
		mc, want                    int
	}{
		{1, 0, false, 1, 1},
		{7, 0, false, 1, 7},
		{7, 500, false, 1, 14},
		{3, 2000, false, 1, 2},
		{100, 0, true, 16, 112},
		{100, 0, true, 32, 128},
		{16, 0, true, 16, 16},
	}
	for _, tt := range tests {
		if got := shardCount(tt.recommended, tt.guildsPerShard, tt.large, tt.mc); got != tt.want {
			t.Errorf("shardCount(%d, %d, %v, %d) = %d, want %d", tt.recommended, tt.guildsPerShard, tt.large, tt.mc, got, tt.want)
		}
	}
}

func TestControlOutsideLauncher(t *testing.T) {
	l, err := newFromEnv(Config{Worker: nopWorker{}, Token: discordtest.TokenFor(1)}, lookupMap(map[string]string{envRole: "cluster"}))
	if err != nil {
		t.Fatal(err)
	}
	if err := l.RestartCluster(context.Background(), 0); !errors.Is(err, ErrNotLauncher) {
		t.Errorf("RestartCluster in a cluster: %v", err)
	}
	if err := l.Shutdown(); !errors.Is(err, ErrNotLauncher) {
		t.Errorf("Shutdown in a cluster: %v", err)
	}
	l, err = newFromEnv(Config{Worker: nopWorker{}, Token: discordtest.TokenFor(1)}, lookupMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Status(); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Status before Run: %v", err)
	}
}
