package launcher

import (
	"context"
	"errors"
	"syscall"
	"testing"
	"time"

	"github.com/megane-go/megane/discordtest"
	"github.com/megane-go/megane/internal/testwait"
	"github.com/megane-go/megane/stats"
)

// sharedReply mirrors the testbot's SharedReply.
type sharedReply struct {
	Clusters    int     `json:"clusters"`
	Guilds      float64 `json:"guilds"`
	EchoKind    any     `json:"echo_kind"`
	EchoRatio   any     `json:"echo_ratio"`
	EchoLaunch  any     `json:"echo_launched"`
	Store       int64   `json:"store"`
	CacheName   string  `json:"cache_name"`
	FetchName   string  `json:"fetch_name"`
	ServiceEcho string  `json:"service_echo"`
}

// The launcher process had no way into the bot's shared state: no IPC of
// its own, store, cache, fetch or statistics. Config.OnStart now gets them,
// and the testbot's OnStart answers an op of its own with what they reach:
// every process's statistics (a service's Statser included, typed), the
// store, the projection, a cross-cluster fetch and a service call; its
// bot-wide total is published with the launcher's own statistics; and its
// context ends when the launcher stops.
func TestOnStartHandlesReachTheSharedState(t *testing.T) {
	f := newFleet(t, fleetOptions{shards: 4, clusters: 2, maxConcurrency: 4,
		env: []string{"TESTBOT_SERVICE=1", "TESTBOT_ONSTART=1"}})
	f.start()
	f.waitAllReady(60 * time.Second)
	guilds := f.srv.World().Guilds
	g := guilds[len(guilds)-1]

	var out sharedReply
	var last error
	testwait.For(t, 30*time.Second, "the launcher's OnStart to see the whole bot", func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		out = sharedReply{}
		last = f.node.CallJSON(ctx, LauncherAddr, "testbot:shared", map[string]string{"guild": g.ID.String()}, &out)
		if last != nil {
			t.Logf("testbot:shared: %v", last)
		}
		return last == nil && out.Clusters == 2 && out.Guilds == float64(len(guilds)) &&
			out.EchoKind == "echo" && out.EchoRatio == 0.5 && out.EchoLaunch == 1.0 && out.Store >= 1 &&
			out.CacheName == g.Name && out.FetchName == g.Name && out.ServiceEcho == "hi"
	})
	testwait.For(t, 10*time.Second, "bot_guilds in the launcher's statistics", func() bool {
		rep, err := stats.Read(context.Background(), f.rdb, f.ks, "launcher")
		n, ok := rep.Int("bot_guilds")
		return err == nil && ok && n == int64(len(guilds))
	})

	if err := f.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-f.exited:
	case <-time.After(30 * time.Second):
		t.Fatal("the launcher did not stop")
	}
	if !f.logContains("testbot: OnStart saw the stop") {
		t.Error("OnStart's context did not end with the launcher")
	}
}

func TestHandlesOnlyWhileTheLauncherRuns(t *testing.T) {
	cfg := Config{Worker: nopWorker{}, Token: discordtest.TokenFor(1)}
	l, err := newFromEnv(cfg, lookupMap(nil))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Handles(); !errors.Is(err, ErrNotRunning) {
		t.Errorf("Handles before Run = %v, want ErrNotRunning", err)
	}
	c, err := newFromEnv(cfg, lookupMap(map[string]string{envRole: string(RoleCluster), envClusterID: "0"}))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.Handles(); !errors.Is(err, ErrNotLauncher) {
		t.Errorf("Handles in a cluster = %v, want ErrNotLauncher", err)
	}
}
