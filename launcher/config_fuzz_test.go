package launcher

import (
	"errors"
	"testing"
)

// FuzzConfigFromEnv: whatever the environment holds, New never panics, and
// a config it accepts has every count and duration within its range.
func FuzzConfigFromEnv(f *testing.F) {
	f.Add("4", "16", "2s", "10s", "info", "24", "-1s", "5", "")
	f.Add("abc", "-1", "1ns", "1ns", "loud", "100000000", "3s", "0", "x")
	f.Add("", "", "", "", "", "", "", "", "")
	f.Add("1024", "65536", "1m", "1h", "warn+3", "100000", "1h", "1000", "MTE.x.y")
	f.Add("0x10", "1e3", "9223372036854775807ns", "-0s", "DEBUG", " 7 ", "100ms", "-0", "Bot MTE.x.y")
	f.Fuzz(func(t *testing.T, clusters, shards, heartbeat, statsInterval, level, demoGuilds, ping, maxRestarts, token string) {
		env := map[string]string{
			envClusters: clusters, envShards: shards, envHeartbeatInterval: heartbeat,
			envStatsInterval: statsInterval, envLogLevel: level, envDemoGuilds: demoGuilds,
			envDemoPingInterval: ping, envMaxRestarts: maxRestarts, envToken: token,
			envReadyTimeout: heartbeat, envRestartBackoff: ping, envGuildsPerShard: shards,
		}
		l, err := newFromEnv(Config{Worker: nopWorker{}}, lookupMap(env))
		if err != nil {
			if !errors.Is(err, ErrInvalidConfig) {
				t.Fatalf("error %v is not ErrInvalidConfig", err)
			}
			return
		}
		c := l.cfg
		for _, f := range c.intFields() {
			if f.check() != nil {
				t.Fatalf("accepted %s=%d", f.env, f.v)
			}
		}
		for _, f := range c.durationFields() {
			if f.check() != nil {
				t.Fatalf("accepted %s=%s", f.env, f.v)
			}
		}
		if c.Logger == nil {
			t.Fatal("no logger")
		}
	})
}
