package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/clusterhash"
	"github.com/megane-go/megane/control"
	"github.com/megane-go/megane/identify"
	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/lifecycle"
	"github.com/megane-go/megane/redisipc"
	"github.com/megane-go/megane/shardmap"
	"github.com/megane-go/megane/shardstatus"
	"github.com/megane-go/megane/stats"
)

// world writes the records of a small bot (2 clusters, 4 shards, one
// service copy) through their owning packages, as the processes would.
func world(t *testing.T, rdb redis.UniversalClient, ks keyspace.Keyspace) {
	t.Helper()
	ctx := context.Background()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(shardmap.Save(ctx, rdb, ks, shardmap.Map{Owners: map[int]int{0: 0, 1: 0, 2: 1, 3: 1}, ShardCount: 4, Clusters: 2}))
	now := time.Now()
	for s, st := range []string{"ready", "ready", "ready", "resuming"} {
		must(shardstatus.SetState(ctx, rdb, ks, s, s/2, st, now).Err())
		must(shardstatus.SetHealth(ctx, rdb, ks, s, int64(40+s), int64(10*s), now).Err())
	}
	for c := range 2 {
		pipe := rdb.Pipeline()
		clusterhash.Register(ctx, pipe, ks, c, clusterhash.Process{PID: 1000 + c, Host: "h", Shards: []int{2 * c, 2*c + 1}, ShardCount: 4, StartedAt: now})
		_, err := pipe.Exec(ctx)
		must(err)
		must(clusterhash.SetSupervision(ctx, rdb, ks, c, clusterhash.Supervision{State: "ready", Restarts: c, Running: true}).Err())
	}
	must(clusterhash.SetReady(ctx, rdb, ks, 0, now).Err())
	must(rdb.Set(ctx, ks.ClusterHeartbeat(0), now.UnixMilli(), time.Minute).Err())
	must(identify.SaveGatewayInfo(ctx, rdb, ks, identify.GatewayInfo{URL: "ws://x", Shards: 4, MaxConcurrency: 2,
		Total: 1000, Remaining: 990, ResetAt: now.Add(time.Hour)}))

	rep := stats.NewReporter(rdb, ks, "cluster:0", stats.Options{})
	must(rep.Add("gateway_events", func(context.Context) any { return map[string]uint64{"MESSAGE_CREATE": 7, "GUILD_CREATE": 3} }))
	must(rep.Add("cache_written", func(context.Context) any { return 12 }))
	must(rep.Add("cache_drops", func(context.Context) any { return 1 }))
	must(rep.Add("cache_queued", func(context.Context) any { return 2 }))
	must(rep.Add("cache_events", func(context.Context) any { return 13 }))
	must(rep.Add("identify_waits", func(context.Context) any { return 2 }))
	must(rep.Add("identify_wait_seconds", func(context.Context) any { return 5.5 }))
	must(rep.Add(redisipc.CallMetricsField, func(context.Context) any {
		return []redisipc.CallMetric{{Op: "guilds", Target: "cluster", Calls: 4, Errors: 1, Seconds: 0.02, Buckets: []uint64{1, 3, 4, 4, 4, 4}}}
	}))
	must(rep.Publish(ctx))
	must(stats.NewReporter(rdb, ks, "service:echo:0", stats.Options{}).Publish(ctx))
	must(stats.NewReporter(rdb, ks, "launcher", stats.Options{}).Publish(ctx))

	for _, ev := range []lifecycle.Event{
		lifecycle.ClusterEvent(lifecycle.ClusterUnresponsive, 1, "heartbeat expired"),
		lifecycle.ClusterEvent(lifecycle.ClusterExited, 1, "signal: killed"),
		lifecycle.ClusterEvent(lifecycle.ClusterExited, 0, "restart requested; exit status 0"),
		lifecycle.ClusterEvent(lifecycle.ClusterExited, 0, "exit status 2"),
		lifecycle.ShardEvent(lifecycle.ShardResumed, 1, 3, ""),
	} {
		must(lifecycle.Publish(ctx, rdb, ks, ev))
	}
}

// localStatus is a launcher's status with the given cluster states.
func localStatus(states ...control.State) func() (control.Status, error) {
	return func() (control.Status, error) {
		st := control.Status{}
		for i, s := range states {
			st.Clusters = append(st.Clusters, control.ClusterStatus{ID: i, ProcessStatus: control.ProcessStatus{State: s}})
		}
		st.Services = []control.ServiceStatus{{Name: "echo", Copy: 0, ProcessStatus: control.ProcessStatus{State: control.StateReady, Restarts: 3}}}
		return st, nil
	}
}

func get(t *testing.T, h http.Handler, path string) (int, string) {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, path, nil))
	return rec.Code, rec.Body.String()
}

// scrape parses /metrics with the Prometheus text parser.
func scrape(t *testing.T, h http.Handler) map[string]*dto.MetricFamily {
	t.Helper()
	code, body := get(t, h, "/metrics")
	if code != http.StatusOK {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return fams
}

// value returns the value of the family's series with the given labels
// (a subset), and whether there is one.
func value(fams map[string]*dto.MetricFamily, name string, labels map[string]string) (float64, bool) {
	f := fams[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.GetMetric() {
		have := map[string]string{}
		for _, l := range m.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		switch {
		case m.Gauge != nil:
			return m.GetGauge().GetValue(), true
		case m.Counter != nil:
			return m.GetCounter().GetValue(), true
		case m.Histogram != nil:
			return float64(m.GetHistogram().GetSampleCount()), true
		}
	}
	return 0, false
}

func TestMetrics(t *testing.T) { testredis.EachBackend(t, testMetrics) }

func testMetrics(t *testing.T) {
	rdb, ks := testredis.Real(t)
	world(t, rdb, ks)
	s := New(Options{Redis: rdb, Keys: ks, Local: localStatus(control.StateReady, control.StateStarting)})
	fams := scrape(t, s.Handler())
	for _, c := range []struct {
		name   string
		labels map[string]string
		want   float64
	}{
		{"megane_redis_up", nil, 1},
		{"megane_shard_count", nil, 4},
		{"megane_shards", map[string]string{"status": "ready"}, 3},
		{"megane_shards", map[string]string{"status": "resuming"}, 1},
		{"megane_shards", map[string]string{"status": "disconnected"}, 0},
		{"megane_shard_status", map[string]string{"shard": "3", "cluster": "1", "status": "resuming"}, 1},
		{"megane_shard_latency_seconds", map[string]string{"shard": "2"}, 0.042},
		{"megane_shard_guilds", map[string]string{"shard": "3"}, 30},
		{"megane_clusters", map[string]string{"status": "ready"}, 1},
		{"megane_clusters", map[string]string{"status": "starting"}, 1},
		{"megane_cluster_up", map[string]string{"cluster": "0"}, 1},
		{"megane_cluster_up", map[string]string{"cluster": "1"}, 0},
		{"megane_cluster_restarts_total", map[string]string{"cluster": "1"}, 1},
		{"megane_cluster_exits_total", map[string]string{"cluster": "1", "reason": "unresponsive"}, 1},
		{"megane_cluster_exits_total", map[string]string{"cluster": "0", "reason": "requested"}, 1},
		{"megane_cluster_exits_total", map[string]string{"cluster": "0", "reason": "crashed"}, 1},
		{"megane_lifecycle_events_total", map[string]string{"type": "cluster_exited"}, 3},
		{"megane_gateway_events_total", map[string]string{"cluster": "0", "type": "MESSAGE_CREATE"}, 7},
		{"megane_cache_writes_total", map[string]string{"cluster": "0"}, 12},
		{"megane_cache_drops_total", map[string]string{"cluster": "0"}, 1},
		{"megane_cache_queue_depth", map[string]string{"cluster": "0"}, 2},
		{"megane_identify_waits_total", map[string]string{"cluster": "0"}, 2},
		{"megane_identify_wait_seconds_total", map[string]string{"cluster": "0"}, 5.5},
		{"megane_session_starts_remaining", nil, 990},
		{"megane_session_starts_limit", nil, 1000},
		{"megane_identify_max_concurrency", nil, 2},
		{"megane_ipc_requests_total", map[string]string{"process": "cluster:0", "op": "guilds", "target": "cluster"}, 4},
		{"megane_ipc_request_errors_total", map[string]string{"process": "cluster:0", "op": "guilds"}, 1},
		{"megane_ipc_request_duration_seconds", map[string]string{"process": "cluster:0", "op": "guilds"}, 4},
		{"megane_launcher_ready", map[string]string{"launcher": "launcher"}, 0},
		{"megane_launcher_clusters", map[string]string{"state": "starting"}, 1},
	} {
		got, ok := value(fams, c.name, c.labels)
		if !ok || got != c.want {
			t.Errorf("%s%v = %v (present %v), want %v", c.name, c.labels, got, ok, c.want)
		}
	}
	for _, name := range []string{"megane_process_resident_memory_bytes", "megane_process_cpu_percent", "megane_process_uptime_seconds"} {
		for _, p := range []string{"cluster:0", "service:echo:0", "launcher"} {
			if _, ok := value(fams, name, map[string]string{"process": p}); !ok {
				t.Errorf("%s has no series for %s", name, p)
			}
		}
	}
	if n := len(fams["megane_shard_status"].GetMetric()); n != 4 {
		t.Errorf("megane_shard_status has %d series, want one per shard (4)", n)
	}
	// The histogram's buckets are the published ones, cumulative.
	h := fams["megane_ipc_request_duration_seconds"].GetMetric()[0].GetHistogram()
	if b := h.GetBucket(); len(b) < len(redisipc.CallBuckets) || b[0].GetCumulativeCount() != 1 || b[1].GetCumulativeCount() != 3 {
		t.Errorf("histogram buckets %v", b)
	}
	// Guild ids never become labels.
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if strings.Contains(l.GetName(), "guild") {
					t.Errorf("%s has a guild label", name)
				}
			}
		}
	}
}

// TestMetricsCountEventsOnce: a second scrape counts only what the stream
// gained since the first.
func TestMetricsCountEventsOnce(t *testing.T) {
	rdb, ks := testredis.Real(t)
	world(t, rdb, ks)
	s := New(Options{Redis: rdb, Keys: ks, CacheFor: time.Nanosecond})
	_ = scrape(t, s.Handler())
	if err := lifecycle.Publish(context.Background(), rdb, ks, lifecycle.ClusterEvent(lifecycle.ClusterExited, 1, "exit status 1")); err != nil {
		t.Fatal(err)
	}
	fams := scrape(t, s.Handler())
	if v, _ := value(fams, "megane_lifecycle_events_total", map[string]string{"type": "cluster_exited"}); v != 4 {
		t.Errorf("cluster_exited counted %v times, want 4", v)
	}
	if v, _ := value(fams, "megane_cluster_exits_total", map[string]string{"cluster": "1", "reason": "crashed"}); v != 1 {
		t.Errorf("cluster 1 crashed %v times, want 1", v)
	}
}

func TestMetricsWithoutRedis(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: closedAddr(t), MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	t.Cleanup(func() { _ = rdb.Close() })
	s := New(Options{Redis: rdb, Keys: keyspace.MustNew("x")})
	fams := scrape(t, s.Handler())
	if v, ok := value(fams, "megane_redis_up", nil); !ok || v != 0 {
		t.Errorf("megane_redis_up = %v (present %v), want 0", v, ok)
	}
	if len(fams) != 1 {
		t.Errorf("%d families exported without Redis, want only megane_redis_up", len(fams))
	}
	if code, body := get(t, s.Handler(), "/healthz"); code != http.StatusServiceUnavailable || !strings.Contains(body, "redis") {
		t.Errorf("/healthz without Redis: %d %s", code, body)
	}
	if code, _ := get(t, s.Handler(), "/api/status"); code != http.StatusServiceUnavailable {
		t.Errorf("/api/status without Redis: %d", code)
	}
}

func closedAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

func TestHealthAndReadiness(t *testing.T) {
	rdb, ks := testredis.Real(t)
	notRunning := func() (control.Status, error) { return control.Status{}, errors.New("launcher: not running") }
	for _, c := range []struct {
		name       string
		local      func() (control.Status, error)
		health     int
		ready      int
		readyBody  string
		healthBody string
	}{
		{"all ready", localStatus(control.StateReady, control.StateReady), 200, 200, `"status":"ok"`, `"status":"ok"`},
		{"one restarting", localStatus(control.StateReady, control.StateStarting), 200, 503, `"not_ready":{"1":"starting"}`, `"status":"ok"`},
		{"backoff", localStatus(control.StateBackoff), 200, 503, `1 clusters not ready`, `"status":"ok"`},
		{"no clusters", localStatus(), 200, 503, `runs no cluster`, `"status":"ok"`},
		{"launcher not running", notRunning, 503, 503, `not running`, `not running`},
		{"standby of several launchers", func() (control.Status, error) {
			return control.Status{Launcher: &control.LauncherInfo{ID: "b"}}, nil
		}, 200, 200, `standby`, `"status":"ok"`},
		{"no launcher", nil, 200, 503, `not served by a launcher`, `"status":"ok"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := New(Options{Redis: rdb, Keys: ks, Local: c.local})
			code, body := get(t, s.Handler(), "/healthz")
			if code != c.health || !strings.Contains(body, c.healthBody) {
				t.Errorf("/healthz: %d %s, want %d with %s", code, body, c.health, c.healthBody)
			}
			code, body = get(t, s.Handler(), "/readyz")
			if code != c.ready || !strings.Contains(body, c.readyBody) {
				t.Errorf("/readyz: %d %s, want %d with %s", code, body, c.ready, c.readyBody)
			}
			var reply map[string]any
			if err := json.Unmarshal([]byte(body), &reply); err != nil {
				t.Errorf("/readyz body is not JSON: %v", err)
			}
		})
	}
}

func TestStatusAPIAndPage(t *testing.T) {
	rdb, ks := testredis.Real(t)
	world(t, rdb, ks)
	s := New(Options{Redis: rdb, Keys: ks, Local: localStatus(control.StateReady, control.StateReady)})
	code, body := get(t, s.Handler(), "/api/status")
	if code != http.StatusOK {
		t.Fatalf("/api/status: %d %s", code, body)
	}
	var snap Snapshot
	if err := json.Unmarshal([]byte(body), &snap); err != nil {
		t.Fatal(err)
	}
	if snap.Version != StatusVersion || len(snap.Shards) != 4 || snap.Shards[3].Status != "resuming" || snap.Shards[3].Guilds != 30 ||
		len(snap.Clusters) != 2 || snap.Clusters[0].PID != 1000 || snap.Clusters[1].Restarts != 1 ||
		snap.Budget.Remaining != 990 || len(snap.Events) != 5 || snap.Events[4].Type != string(lifecycle.ShardResumed) {
		t.Errorf("snapshot %+v", snap)
	}
	if len(snap.Services) != 1 || snap.Services[0].Name != "echo" || snap.Services[0].Restarts != 3 || snap.Services[0].RSSBytes <= 0 {
		t.Errorf("services %+v", snap.Services)
	}
	if snap.Launcher == nil || !snap.Launcher.Ready {
		t.Errorf("launcher %+v", snap.Launcher)
	}
	code, page := get(t, s.Handler(), "/")
	if code != http.StatusOK {
		t.Fatalf("/: %d %s", code, page)
	}
	if n := strings.Count(page, `class="shard ready"`) - 1; n != 3 { // one is the legend's
		t.Errorf("page has %d ready shard cells, want 3", n)
	}
	if !strings.Contains(page, `data-shard="3" data-status="resuming"`) || !strings.Contains(page, `<script src="status.js">`) {
		t.Errorf("page misses shard 3 or the script:\n%s", page)
	}
	if strings.Contains(page, "http://") || strings.Contains(page, "https://") {
		t.Error("the page loads something from the network; it must work offline")
	}
	if code, js := get(t, s.Handler(), "/status.js"); code != http.StatusOK || !strings.Contains(js, "api/status") {
		t.Errorf("/status.js: %d", code)
	}
	if code, _ := get(t, s.Handler(), "/nothing"); code != http.StatusNotFound {
		t.Errorf("/nothing: %d, want 404", code)
	}
	// Mounted under a prefix, the page's relative links still resolve.
	mux := http.NewServeMux()
	mux.Handle("/megane/", http.StripPrefix("/megane", s.Handler()))
	for _, p := range []string{"/megane/", "/megane/status.js", "/megane/api/status", "/megane/metrics"} {
		if code, _ := get(t, mux, p); code != http.StatusOK {
			t.Errorf("GET %s under a prefix: %d", p, code)
		}
	}
}

// TestStartServesAndRefusesATakenAddress: Start reports an address in use
// (the launcher then runs without the endpoint), and port 0 picks one.
func TestStartServesAndRefusesATakenAddress(t *testing.T) {
	rdb, ks := testredis.Real(t)
	s := New(Options{Addr: "127.0.0.1:0", Redis: rdb, Keys: ks})
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close(context.Background()) })
	resp, err := http.Get(s.URL() + "healthz")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("GET healthz: %d %s", resp.StatusCode, b)
	}
	taken := New(Options{Addr: s.Addr(), Redis: rdb, Keys: ks})
	if err := taken.Start(); err == nil {
		_ = taken.Close(context.Background())
		t.Fatal("Start on a taken address succeeded")
	}
	if err := taken.Close(context.Background()); err != nil {
		t.Errorf("Close of a server that never started: %v", err)
	}
}

// TestPageWithManyShards: a bot of 1,200 shards renders one small cell per
// shard, in a page that stays small.
func TestPageWithManyShards(t *testing.T) {
	rdb, ks := testredis.Real(t)
	ctx := context.Background()
	const shards = 1200
	owners := map[int]int{}
	pipe := rdb.Pipeline()
	now := time.Now()
	for s := range shards {
		owners[s] = s / 16
		shardstatus.SetState(ctx, pipe, ks, s, s/16, shardStatuses[s%5], now)
		shardstatus.SetHealth(ctx, pipe, ks, s, 40, 1000, now)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	if err := shardmap.Save(ctx, rdb, ks, shardmap.Map{Owners: owners, ShardCount: shards, Clusters: shards / 16}); err != nil {
		t.Fatal(err)
	}
	s := New(Options{Redis: rdb, Keys: ks})
	code, page := get(t, s.Handler(), "/")
	if code != http.StatusOK {
		t.Fatalf("/: %d", code)
	}
	if n := strings.Count(page, `<div class="shard `); n != shards {
		t.Errorf("%d shard cells, want %d", n, shards)
	}
	if len(page) > 300<<10 {
		t.Errorf("the page of %d shards is %d KiB", shards, len(page)>>10)
	}
	fams := scrape(t, s.Handler())
	if v, _ := value(fams, "megane_shards", map[string]string{"status": "disconnected"}); v != shards/5 {
		t.Errorf("disconnected shards = %v, want %d", v, shards/5)
	}
}
