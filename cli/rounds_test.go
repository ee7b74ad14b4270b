package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/lifecycle"
	"github.com/megane-go/megane/redisipc"
	"github.com/megane-go/megane/stats"
)

// TestStatusJSONIsTyped: a cluster's pid and restarts are numbers in
// status --json, beside the raw fields older readers use.
func TestStatusJSONIsTyped(t *testing.T) {
	addr, _ := seed(t)
	out, err := run(t, addr, "--json", "status")
	if err != nil {
		t.Fatal(err)
	}
	var ov struct {
		Clusters []struct {
			ID       int               `json:"id"`
			Status   string            `json:"status"`
			PID      int               `json:"pid"`
			Restarts int               `json:"restarts"`
			Shards   []int             `json:"shards"`
			Fields   map[string]string `json:"fields"`
		} `json:"clusters"`
	}
	if err := json.Unmarshal([]byte(out), &ov); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	if len(ov.Clusters) != 2 || ov.Clusters[0].PID != 123 || ov.Clusters[1].PID != 124 || ov.Clusters[0].Status != "ready" ||
		len(ov.Clusters[1].Shards) != 2 || ov.Clusters[0].Fields["pid"] != "123" {
		t.Errorf("clusters = %+v", ov.Clusters)
	}
	if !strings.Contains(out, `"pid": 123`) {
		t.Errorf("pid is not a JSON number:\n%s", out)
	}
}

// TestEvalNamesServiceCopiesApart: two copies of a service answer at one
// address; eval shows two distinct names.
func TestEvalNamesServiceCopiesApart(t *testing.T) {
	addr, ks := seed(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	for range 2 {
		node, err := redisipc.New(context.Background(), redisipc.Options{Redis: rdb, Keys: ks, Addr: "service:counter", Group: true})
		if err != nil {
			t.Fatal(err)
		}
		defer node.Close(context.Background())
	}
	out, err := run(t, addr, "--json", "eval", "--target", "service:counter", "1 + 1")
	if err != nil {
		t.Fatalf("eval: %v\n%s", err, out)
	}
	var g struct {
		Answers []struct {
			From string `json:"from"`
		} `json:"answers"`
	}
	if err := json.Unmarshal([]byte(out), &g); err != nil {
		t.Fatalf("%v in %s", err, out)
	}
	if len(g.Answers) != 2 || g.Answers[0].From == g.Answers[1].From || !strings.HasPrefix(g.Answers[0].From, "service:counter") {
		t.Errorf("answers of two copies: %s", out)
	}
}

func TestNameCopies(t *testing.T) {
	g := &redisipc.Gathered{
		Answers: []redisipc.Answer{
			{From: "service:counter", Instance: "a"}, {From: "service:counter", Instance: "b"}, {From: "cluster:0", Instance: "c"},
			{From: "service:solo", Instance: "s"},
		},
		Missing:          []string{"service:counter", "cluster:1"},
		MissingInstances: []string{"d"},
	}
	nameCopies(g, map[string]string{"a": "service:counter#0", "d": "service:counter#2"})
	got := []string{g.Answers[0].From, g.Answers[1].From, g.Answers[2].From, g.Answers[3].From}
	want := []string{"service:counter#0", "service:counter (b)", "cluster:0", "service:solo"}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("answer %d from %q, want %q", i, got[i], want[i])
		}
	}
	if strings.Join(g.Missing, ",") != "service:counter#2,cluster:1" {
		t.Errorf("missing = %v", g.Missing)
	}
}

// TestEvalFailsWhenEveryTargetFailed: the errors are printed and the
// command fails, so a script sees it.
func TestEvalFailsWhenEveryTargetFailed(t *testing.T) {
	addr, ks := seed(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	for range 2 {
		node, err := redisipc.New(context.Background(), redisipc.Options{Redis: rdb, Keys: ks, Addr: "service:counter", Group: true})
		if err != nil {
			t.Fatal(err)
		}
		defer node.Close(context.Background())
	}
	out, err := run(t, addr, "eval", "--target", "services", "no_such_name")
	if err == nil || strings.Count(out, "error") != 2 {
		t.Errorf("eval failing on both copies = %q, %v; want two errors and a failure", out, err)
	}
}

func TestStatsWatchPrintsUntilInterrupted(t *testing.T) {
	m, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("bot1")
	ctx := context.Background()
	rdb.HSet(ctx, ks.Launcher(), "pid", 1)
	r := stats.NewReporter(rdb, ks, "cluster:0", stats.Options{})
	_ = r.Add("guilds", func(context.Context) any { return 7 })
	_ = r.Add("gateway_events", func(context.Context) any { return map[string]int{"MESSAGE_CREATE": 3} })
	if err := r.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	runCtx, cancel := context.WithTimeout(ctx, 1500*time.Millisecond)
	defer cancel()
	err := App(&out).RunContext(runCtx, []string{"megane-cli", "--redis", "redis://" + m.Addr(), "stats", "--watch", "--interval", "100ms"})
	if err != nil {
		t.Fatalf("stats --watch: %v", err)
	}
	if n := strings.Count(out.String(), "--- "); n < 2 {
		t.Errorf("stats --watch printed %d times in 1.5s at 100ms:\n%s", n, out.String())
	}
	if strings.Contains(out.String(), "GATEWAY_EVENTS") || !strings.Contains(out.String(), "GUILDS") {
		t.Errorf("the table shows a map field, or lacks guilds:\n%s", out.String())
	}
	if _, err := run(t, m.Addr(), "stats", "--watch", "--interval", "1ns"); err == nil {
		t.Error("--interval 1ns accepted")
	}
	js, err := run(t, m.Addr(), "--json", "stats")
	if err != nil || !strings.Contains(js, "MESSAGE_CREATE") {
		t.Errorf("--json stats lacks the map field: %v\n%s", err, js)
	}
}

func TestHealth(t *testing.T) {
	code := http.StatusOK
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(code)
		_, _ = w.Write([]byte(`{"status":"ok"}`))
	}))
	defer srv.Close()
	health := func() (string, error) {
		var out bytes.Buffer
		err := App(&out).RunContext(context.Background(), []string{"megane-cli", "health", "--url", srv.URL + "/healthz"})
		return out.String(), err
	}
	if out, err := health(); err != nil || !strings.Contains(out, `"ok"`) {
		t.Errorf("health of a healthy launcher = %q, %v", out, err)
	}
	code = http.StatusServiceUnavailable
	if _, err := health(); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("health of an unhealthy launcher: %v, want a 503 failure", err)
	}
	var out bytes.Buffer
	if err := App(&out).RunContext(context.Background(), []string{"megane-cli", "health", "--url", "ftp://x"}); err == nil {
		t.Error("an ftp:// URL was accepted")
	}
}

func TestDescribeEvent(t *testing.T) {
	for _, c := range []struct {
		ev   lifecycle.Event
		want string
	}{
		{lifecycle.ShardEvent(lifecycle.ShardResumed, 2, 9, ""), "cluster 2: shard 9 shard_resumed"},
		{lifecycle.ClusterEvent(lifecycle.ClusterExited, 1, "exit status 0"), "cluster 1: cluster_exited (exit status 0)"},
		{lifecycle.ServiceEvent(lifecycle.ServiceReady, "echo", "copy 0"), "service echo: service_ready (copy 0)"},
	} {
		if got := describeEvent(c.ev); got != c.want {
			t.Errorf("describeEvent = %q, want %q", got, c.want)
		}
	}
}
