package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/identify"
	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/internal/testwait"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/lifecycle"
	"github.com/megane-go/megane/redisipc"
	"github.com/megane-go/megane/services"
	"github.com/megane-go/megane/sessions"
	"github.com/megane-go/megane/stats"
)

// run executes megane-cli with args against the miniredis at addr.
func run(t *testing.T, addr string, args ...string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	full := append([]string{"megane-cli", "--redis", "redis://" + addr}, args...)
	err := App(&out).RunContext(context.Background(), full)
	return out.String(), err
}

func seed(t *testing.T) (addr string, ks keyspace.Keyspace) {
	t.Helper()
	m, rdb := testredis.Mini(t)
	ks = keyspace.MustNew("bot1")
	ctx := context.Background()
	if err := identify.SaveGatewayInfo(ctx, rdb, ks, identify.GatewayInfo{
		URL: "wss://gateway.discord.gg", Shards: 4, MaxConcurrency: 1, Total: 1000, Remaining: 990,
		ResetAt: time.Now().Add(time.Hour),
	}); err != nil {
		t.Fatal(err)
	}
	rdb.HSet(ctx, ks.ShardMap(), "shard_count", 4, "clusters", 2, "0", 0, "1", 0, "2", 1, "3", 1)
	rdb.HSet(ctx, ks.Cluster(0), "status", "ready", "pid", 123)
	rdb.HSet(ctx, ks.Cluster(1), "status", "ready", "pid", 124)
	rdb.Set(ctx, ks.ClusterHeartbeat(0), "1", time.Minute)
	rdb.HSet(ctx, ks.ShardStatus(2), "status", "ready", "latency_ms", 42)
	if err := sessions.Save(ctx, rdb, ks, 2, sessions.State{SessionID: "abc", Sequence: 17, ResumeURL: "wss://r"}); err != nil {
		t.Fatal(err)
	}
	if err := lifecycle.Publish(ctx, rdb, ks, lifecycle.ClusterEvent(lifecycle.ClusterReady, 1, "4 shards")); err != nil {
		t.Fatal(err)
	}
	return m.Addr(), ks
}

func TestStatusReadsTheLayout(t *testing.T) {
	addr, _ := seed(t)
	out, err := run(t, addr, "--json", "status")
	if err != nil {
		t.Fatal(err)
	}
	var ov struct {
		Namespace  string `json:"namespace"`
		ShardCount int    `json:"shard_count"`
		Clusters   []struct {
			ID     int   `json:"id"`
			Alive  bool  `json:"alive"`
			Shards []int `json:"shards"`
		} `json:"clusters"`
		Shards []struct {
			ID        int `json:"id"`
			Cluster   int `json:"cluster"`
			LatencyMS int `json:"latency_ms"`
			Session   struct {
				SessionID string
				Sequence  int
			} `json:"session"`
		} `json:"shards"`
	}
	if err := json.Unmarshal([]byte(out), &ov); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	if ov.Namespace != "bot1" || ov.ShardCount != 4 || len(ov.Clusters) != 2 || len(ov.Shards) != 4 {
		t.Fatalf("overview = %+v", ov)
	}
	if !ov.Clusters[0].Alive || ov.Clusters[1].Alive {
		t.Errorf("alive = %v/%v, want true/false (only cluster 0 has a heartbeat)", ov.Clusters[0].Alive, ov.Clusters[1].Alive)
	}
	if got := ov.Shards[2]; got.Cluster != 1 || got.LatencyMS != 42 || got.Session.SessionID != "abc" || got.Session.Sequence != 17 {
		t.Errorf("shard 2 = %+v", got)
	}

	text, err := run(t, addr, "status")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"namespace bot1", "max_concurrency 1", "990/1000", "CLUSTER", "0-1", "abc"} {
		if !strings.Contains(text, want) {
			t.Errorf("status output lacks %q:\n%s", want, text)
		}
	}
}

func TestStoreRoundTripKeepsZeroValues(t *testing.T) {
	addr, _ := seed(t)
	for _, v := range []string{"0", "false", `""`, `{"a":1}`} {
		if _, err := run(t, addr, "store", "set", "prefs", "k", v); err != nil {
			t.Fatalf("set %s: %v", v, err)
		}
		out, err := run(t, addr, "store", "get", "prefs", "k")
		if err != nil {
			t.Fatalf("get: %v", err)
		}
		if strings.TrimSpace(out) != v {
			t.Errorf("get after set %s = %q", v, out)
		}
	}
	out, err := run(t, addr, "store", "incr", "prefs", "n", "5")
	if err != nil || strings.TrimSpace(out) != "5" {
		t.Errorf("incr = %q, %v", out, err)
	}
	if _, err := run(t, addr, "store", "del", "prefs", "missing"); err == nil {
		t.Error("deleting a missing key succeeded")
	}
}

func TestEventsAndNamespaces(t *testing.T) {
	addr, _ := seed(t)
	out, err := run(t, addr, "events")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out, "cluster_ready") || !strings.Contains(out, "cluster=1") {
		t.Errorf("events output: %q", out)
	}
	out, err = run(t, addr, "namespaces")
	if err != nil || strings.TrimSpace(out) != "bot1" {
		t.Errorf("namespaces = %q, %v", out, err)
	}
}

func TestClearErrors(t *testing.T) {
	addr, _ := seed(t)
	tests := []struct {
		args []string
		want string
	}{
		{[]string{"restart", "x"}, "usage"},
		{[]string{"store", "get", "onlybucket"}, "usage"},
		{[]string{"--namespace", "bad ns", "status"}, "namespace"},
		{[]string{"restart", "0"}, "no launcher"},
	}
	for _, tt := range tests {
		_, err := run(t, addr, append([]string{"--timeout", "2s"}, tt.args...)...)
		if err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%v: error = %v, want it to mention %q", tt.args, err, tt.want)
		}
	}
	if _, err := run(t, "127.0.0.1:1", "status"); err == nil {
		t.Error("status against a dead Redis succeeded")
	}
}

func TestStatsTable(t *testing.T) {
	m, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("bot1")
	ctx := context.Background()
	rdb.HSet(ctx, ks.Launcher(), "pid", 1)
	r := stats.NewReporter(rdb, ks, "cluster:0", stats.Options{})
	_ = r.Add("guilds", func(context.Context) any { return 7 })
	if err := r.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	out, err := run(t, m.Addr(), "stats")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"cluster:0", "GUILDS", "7", "MiB"} {
		if !strings.Contains(out, want) {
			t.Errorf("stats output lacks %q:\n%s", want, out)
		}
	}
}

func TestPingAndEvalReachALiveNode(t *testing.T) {
	addr, ks := seed(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	node, err := redisipc.New(context.Background(), redisipc.Options{Redis: rdb, Keys: ks, Addr: "cluster:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close(context.Background())
	node.EvalEnv().Set("guilds", 7)

	out, err := run(t, addr, "ping", "cluster:0")
	if err != nil || !strings.Contains(out, "cluster:0 answered in") {
		t.Errorf("ping = %q, %v", out, err)
	}
	out, err = run(t, addr, "--json", "eval", "--target", "cluster:0", "guilds * 2")
	if err != nil || !strings.Contains(out, `"from": "cluster:0"`) || !strings.Contains(out, `"result": 14`) {
		t.Errorf("eval = %q, %v", out, err)
	}
	if _, err := run(t, addr, "eval", "guilds +"); err == nil {
		t.Error("an expression that does not compile succeeded")
	}
	// Every answer an error (an unknown name): the errors are shown and the
	// command fails, so a script sees it.
	out, err = run(t, addr, "eval", "--target", "cluster:0", "no_such_name")
	if err == nil || !strings.Contains(out, "cluster:0") || !strings.Contains(out, "error") {
		t.Errorf("eval of an unknown name = %q, %v; want the error shown and a failure", out, err)
	}
}

// A launcher start that failed early (a wrong token, no session starts
// left) leaves gateway info and a shard map in a namespace of its own;
// status used to refuse with "several bots share this Redis". It now
// picks the bot that runs (or ran) and names the leftovers.
func TestStatusPassesOverLeftoverNamespaces(t *testing.T) {
	for _, live := range []bool{false, true} {
		t.Run(map[bool]string{false: "stopped bot", true: "running bot"}[live], func(t *testing.T) {
			addr, ks := seed(t)
			rdb := redis.NewClient(&redis.Options{Addr: addr})
			defer rdb.Close()
			ctx := context.Background()
			rdb.HSet(ctx, ks.Launcher(), "status", "stopped", "pid", 1)
			ghost := keyspace.MustNew("1100000000000000001")
			if err := identify.SaveGatewayInfo(ctx, rdb, ghost, identify.GatewayInfo{Shards: 1, MaxConcurrency: 1}); err != nil {
				t.Fatal(err)
			}
			rdb.HSet(ctx, ghost.ShardMap(), "shard_count", 1, "clusters", 1, "0", 0)
			if live {
				rdb.HSet(ctx, ks.Launcher(), "status", "running")
				n, err := redisipc.New(ctx, redisipc.Options{Redis: rdb, Keys: ks, Addr: "launcher"})
				if err != nil {
					t.Fatal(err)
				}
				defer n.Close(ctx)
				// A stopped bot's record does not compete with a running one.
				rdb.HSet(ctx, keyspace.MustNew("old").Launcher(), "status", "stopped")
			}
			out, err := run(t, addr, "status")
			if err != nil {
				t.Fatalf("status: %v", err)
			}
			if !strings.Contains(out, "namespace bot1") {
				t.Errorf("status chose another namespace:\n%s", out)
			}
			if live {
				return
			}
			// Two bots that both ran, neither running: still a question.
			rdb.HSet(ctx, ghost.Launcher(), "status", "stopped")
			if _, err := run(t, addr, "status"); err == nil || !strings.Contains(err.Error(), "--namespace") {
				t.Errorf("two stopped bots: %v, want a request for --namespace", err)
			}
		})
	}
}

// Every IPC-using command used to leave its CLI inbox behind.
func TestCommandsLeaveNoCLIKeys(t *testing.T) {
	addr, ks := seed(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	ctx := context.Background()
	node, err := redisipc.New(ctx, redisipc.Options{Redis: rdb, Keys: ks, Addr: "cluster:0"})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close(ctx)
	for _, args := range [][]string{{"ping", "cluster:0"}, {"eval", "--target", "cluster:0", "1"}, {"ping", "cluster:0"}} {
		if _, err := run(t, addr, args...); err != nil {
			t.Fatalf("%v: %v", args, err)
		}
	}
	if _, err := run(t, addr, "--timeout", "2s", "restart", "0"); err == nil {
		t.Fatal("restart without a launcher succeeded")
	}
	left, err := rdb.Keys(ctx, ks.Base()+"*cli*").Result()
	if err != nil {
		t.Fatal(err)
	}
	if len(left) > 0 {
		t.Errorf("CLI commands left %q", left)
	}
}

type statsService struct{}

func (statsService) Launch(ctx context.Context, s *services.Service) error {
	return s.Stats.Add("queue_depth", func(context.Context) any { return 3 })
}

func (statsService) HandleCommand(context.Context, *services.Service, services.Command) (any, error) {
	return nil, redisipc.ErrUnknownOp
}

func (statsService) Stats(context.Context) map[string]any {
	return map[string]any{"lookups": 12, "hit_ratio": 0.75, "region": "eu"}
}

// A service's Statser figures were missing from megane-cli stats, and
// every value came out of --json as a string. Both kinds of figures show,
// numbers as JSON numbers.
func TestStatsJSONShowsServiceFiguresTyped(t *testing.T) {
	m, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("bot1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	rdb.HSet(ctx, ks.Launcher(), "pid", 1) // what megane-cli finds the bot by
	ready, done := make(chan struct{}), make(chan error, 1)
	go func() {
		done <- services.Run(ctx, services.Options{Name: "lookup", Redis: rdb, Keys: ks,
			IPC:   redisipc.Options{BlockTimeout: 100 * time.Millisecond},
			Stats: stats.Options{Interval: 20 * time.Millisecond}, OnReady: func() { close(ready) }}, statsService{})
	}()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("services.Run = %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("service not ready")
	}
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()
	want := map[string]any{"lookups": 12.0, "hit_ratio": 0.75, "region": "eu", "queue_depth": 3.0, "service": "lookup", "copy": 0.0}
	testwait.Problems(t, 5*time.Second, "megane-cli --json stats with every field", func() []string {
		out, err := run(t, m.Addr(), "--json", "stats")
		if err != nil {
			t.Fatal(err)
		}
		var reports []struct {
			Name   string         `json:"name"`
			Fields map[string]any `json:"fields"`
		}
		if err := json.Unmarshal([]byte(out), &reports); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if len(reports) != 1 || reports[0].Name != "service:lookup:0" {
			return []string{"reports: " + out}
		}
		var bad []string
		f := reports[0].Fields
		for k, v := range want {
			if f[k] != v {
				bad = append(bad, fmt.Sprintf("%s=%#v (want %#v)", k, f[k], v))
			}
		}
		for _, k := range []string{"pid", "rss_bytes", "heap_bytes", "goroutines", "cpu_percent"} {
			if _, ok := f[k].(float64); !ok {
				bad = append(bad, fmt.Sprintf("%s=%#v (want a number)", k, f[k]))
			}
		}
		return bad
	})
	out, err := run(t, m.Addr(), "stats")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"LOOKUPS", "HIT_RATIO", "QUEUE_DEPTH", "REGION", "0.75", "eu", "lookup"} {
		if !strings.Contains(out, s) {
			t.Errorf("stats table lacks %q:\n%s", s, out)
		}
	}
}
