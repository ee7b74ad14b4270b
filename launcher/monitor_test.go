package launcher

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/megane-go/megane/internal/testwait"
	"github.com/megane-go/megane/shardstatus"
)

// freeAddr returns a loopback address with a port nothing listens on now.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	_ = ln.Close()
	return addr
}

// monitored is a fleet whose launcher serves its HTTP endpoint.
type monitored struct {
	*fleet
	base string // http://host:port
}

func newMonitored(t *testing.T, shards, clusters int) *monitored {
	t.Helper()
	addr := freeAddr(t)
	f := newFleet(t, fleetOptions{shards: shards, clusters: clusters, maxConcurrency: 16,
		env: []string{"MEGANE_HTTP_ADDR=" + addr, "TESTBOT_SERVICE=1"}})
	f.start()
	f.waitAllReady(60 * time.Second)
	m := &monitored{fleet: f, base: "http://" + addr}
	testwait.For(t, 10*time.Second, "the launcher serving "+m.base, func() bool {
		code, _, err := m.get("/healthz")
		return err == nil && code == http.StatusOK
	})
	if !f.logContains(m.base + "/") {
		t.Errorf("the launcher did not log its status page's URL %s/", m.base)
	}
	return m
}

func (m *monitored) get(path string) (int, string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, m.base+path, nil)
	if err != nil {
		return 0, "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// scrape reads /metrics with the Prometheus text parser.
func (m *monitored) scrape() (map[string]*dto.MetricFamily, error) {
	code, body, err := m.get("/metrics")
	if err != nil {
		return nil, err
	}
	if code != http.StatusOK {
		return nil, &httpError{code, body}
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	return p.TextToMetricFamilies(strings.NewReader(body))
}

type httpError struct {
	code int
	body string
}

func (e *httpError) Error() string { return strconv.Itoa(e.code) + ": " + e.body }

// sum adds up the values of the family's series whose labels include
// labels.
func sum(fams map[string]*dto.MetricFamily, name string, labels map[string]string) float64 {
	total := 0.0
next:
	for _, mt := range fams[name].GetMetric() {
		have := map[string]string{}
		for _, l := range mt.GetLabel() {
			have[l.GetName()] = l.GetValue()
		}
		for k, v := range labels {
			if have[k] != v {
				continue next
			}
		}
		total += mt.GetGauge().GetValue() + mt.GetCounter().GetValue()
	}
	return total
}

// killCluster SIGKILLs cluster c's process and returns its pid.
func (m *monitored) killCluster(c int) int {
	m.t.Helper()
	st, err := m.status()
	if err != nil {
		m.t.Fatal(err)
	}
	pid := st.Clusters[c].PID
	if pid <= 0 {
		m.t.Fatalf("cluster %d has no process", c)
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		m.t.Fatal(err)
	}
	return pid
}

// shardStatuses reads every shard's status from Redis.
func (m *monitored) shardStatuses(shards int) []string {
	out := make([]string, shards)
	for s := range shards {
		h, _ := shardstatus.Get(context.Background(), m.rdb, m.ks, s).Result()
		out[s] = shardstatus.Parse(h).Status
	}
	return out
}

// TestMetricsAndReadiness runs a fleet with its HTTP endpoint on, scrapes
// /metrics with the Prometheus parser, and watches /readyz through a
// cluster's crash and respawn.
func TestMetricsAndReadiness(t *testing.T) {
	const shards, clusters = 16, 4
	m := newMonitored(t, shards, clusters)

	var fams map[string]*dto.MetricFamily
	testwait.Problems(t, 15*time.Second, "/metrics showing every shard ready", func() []string {
		var err error
		if fams, err = m.scrape(); err != nil {
			return []string{err.Error()}
		}
		var p []string
		if v := sum(fams, "megane_shards", nil); v != shards {
			p = append(p, "megane_shards adds up to "+strconv.FormatFloat(v, 'g', -1, 64))
		}
		if v := sum(fams, "megane_shards", map[string]string{"status": "ready"}); v != shards {
			p = append(p, "megane_shards{status=ready} is "+strconv.FormatFloat(v, 'g', -1, 64))
		}
		if n := len(fams["megane_shard_status"].GetMetric()); n != shards {
			p = append(p, strconv.Itoa(n)+" megane_shard_status series")
		}
		if v := sum(fams, "megane_shard_count", nil); v != shards {
			p = append(p, "megane_shard_count is "+strconv.FormatFloat(v, 'g', -1, 64))
		}
		if v := sum(fams, "megane_cluster_up", nil); v != clusters {
			p = append(p, "megane_cluster_up adds up to "+strconv.FormatFloat(v, 'g', -1, 64))
		}
		if v := sum(fams, "megane_launcher_ready", nil); v != 1 {
			p = append(p, "megane_launcher_ready is not 1")
		}
		for c := range clusters {
			if _, ok := findSeries(fams, "megane_process_resident_memory_bytes", "process", "cluster:"+strconv.Itoa(c)); !ok {
				p = append(p, "no RSS of cluster "+strconv.Itoa(c))
			}
		}
		return p
	})
	if v := sum(fams, "megane_session_starts_remaining", nil); v <= 0 {
		t.Errorf("megane_session_starts_remaining = %v", v)
	}

	// The event counters move when the fake dispatches.
	msgs := func(f map[string]*dto.MetricFamily) float64 {
		return sum(f, "megane_gateway_events_total", map[string]string{"type": "MESSAGE_CREATE"})
	}
	before := msgs(fams)
	guilds := m.srv.World().Guilds[:8]
	ids := m.say(guilds)
	m.waitSeen(ids, 20*time.Second)
	testwait.Problems(t, 15*time.Second, "megane_gateway_events_total{type=MESSAGE_CREATE} counting the messages", func() []string {
		f, err := m.scrape()
		if err != nil {
			return []string{err.Error()}
		}
		// The bot answers every message with one of its own, which the
		// fake dispatches too.
		if got := msgs(f) - before; got < float64(len(ids)) {
			return []string{"MESSAGE_CREATE moved by " + strconv.FormatFloat(got, 'g', -1, 64)}
		}
		return nil
	})

	// /readyz: 200, then 503 while a cluster restarts, then 200 again.
	if code, body, err := m.get("/readyz"); err != nil || code != http.StatusOK {
		t.Fatalf("/readyz before the crash: %d %s %v", code, body, err)
	}
	pid := m.killCluster(1)
	var notReady string
	testwait.For(t, 10*time.Second, "/readyz answering 503 while cluster 1 restarts", func() bool {
		code, body, err := m.get("/readyz")
		notReady = body
		return err == nil && code == http.StatusServiceUnavailable
	})
	if !strings.Contains(notReady, `"not_ready":{"1":`) {
		t.Errorf("/readyz while cluster 1 restarts does not name it: %s", notReady)
	}
	testwait.For(t, 30*time.Second, "/readyz answering 200 after cluster 1 resumed", func() bool {
		code, _, err := m.get("/readyz")
		return err == nil && code == http.StatusOK
	})
	testwait.Problems(t, 15*time.Second, "the crash of cluster 1 in /metrics", func() []string {
		f, err := m.scrape()
		if err != nil {
			return []string{err.Error()}
		}
		if v := sum(f, "megane_cluster_exits_total", map[string]string{"cluster": "1", "reason": "crashed"}); v != 1 {
			return []string{"megane_cluster_exits_total{cluster=1,reason=crashed} = " + strconv.FormatFloat(v, 'g', -1, 64)}
		}
		if v := sum(f, "megane_cluster_restarts_total", map[string]string{"cluster": "1"}); v != 1 {
			return []string{"megane_cluster_restarts_total{cluster=1} = " + strconv.FormatFloat(v, 'g', -1, 64)}
		}
		return nil
	})
	t.Logf("cluster 1 (pid %d) killed and back; /readyz said %s", pid, strings.TrimSpace(notReady))
}

func findSeries(fams map[string]*dto.MetricFamily, name, label, value string) (*dto.Metric, bool) {
	for _, mt := range fams[name].GetMetric() {
		for _, l := range mt.GetLabel() {
			if l.GetName() == label && l.GetValue() == value {
				return mt, true
			}
		}
	}
	return nil, false
}

// chromium returns the path of a Chromium binary, or "" when none is
// installed (scripts/test installs Debian's chromium).
func chromium() string {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	return ""
}

// headless runs Chromium headless on url with args and returns its stdout.
func headless(t *testing.T, bin, url string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	all := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
		"--no-first-run", "--user-data-dir=" + t.TempDir()}, args...)
	cmd := exec.CommandContext(ctx, bin, append(all, url)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %v: %v\n%s", args, err, stderr.String())
	}
	return string(out)
}

var (
	shardCellRE = regexp.MustCompile(`<div[^>]*\bclass="shard [a-z]+"[^>]*>`)
	dataShardRE = regexp.MustCompile(`data-shard="(\d+)"`)
	dataStRE    = regexp.MustCompile(`data-status="([a-z]+)"`)
)

// TestStatusPageInChromium renders the status page of a 16-shard fleet in
// headless Chromium: a screenshot, and the DOM after a cluster was
// SIGKILLed and its shards resumed, which must show every shard with the
// status Redis has for it.
func TestStatusPageInChromium(t *testing.T) {
	bin := chromium()
	if bin == "" {
		t.Skip("SKIPPED: no Chromium found (scripts/test installs Debian's chromium); the status page was not rendered")
	}
	const shards, clusters = 16, 4
	m := newMonitored(t, shards, clusters)
	allReady := func() bool {
		for _, s := range m.shardStatuses(shards) {
			if s != "ready" {
				return false
			}
		}
		return true
	}
	testwait.For(t, 15*time.Second, "every shard ready in Redis", allReady)

	shot := os.Getenv("MEGANE_STATUS_SCREENSHOT")
	if shot == "" {
		shot = filepath.Join(t.TempDir(), "status-page.png")
	}
	headless(t, bin, m.base+"/", "--hide-scrollbars", "--window-size=1100,720", "--virtual-time-budget=3000", "--screenshot="+shot)
	if fi, err := os.Stat(shot); err != nil || fi.Size() == 0 {
		t.Fatalf("no screenshot at %s: %v", shot, err)
	}
	t.Logf("screenshot of the status page: %s", shot)

	m.killCluster(2)
	testwait.For(t, 10*time.Second, "/readyz answering 503 after cluster 2 was killed", func() bool {
		code, _, err := m.get("/readyz")
		return err == nil && code == http.StatusServiceUnavailable
	})
	testwait.For(t, 30*time.Second, "cluster 2 back and every shard ready", func() bool {
		code, _, err := m.get("/readyz")
		return err == nil && code == http.StatusOK && allReady()
	})
	resumed := 0
	for _, r := range m.srv.Resumes() {
		if r.OK {
			resumed++
		}
	}
	if resumed == 0 {
		t.Errorf("cluster 2's shards did not RESUME")
	}

	want := m.shardStatuses(shards)
	dom := headless(t, bin, m.base+"/", "--virtual-time-budget=5000", "--dump-dom")
	if !strings.Contains(dom, "data-polled=") {
		t.Errorf("the page's script never polled /api/status")
	}
	cells := shardCellRE.FindAllString(dom, -1)
	if len(cells) != shards {
		t.Fatalf("the DOM has %d shard cells, want %d:\n%s", len(cells), shards, dom)
	}
	seen := map[int]bool{}
	for _, c := range cells {
		id, st := dataShardRE.FindStringSubmatch(c), dataStRE.FindStringSubmatch(c)
		if id == nil || st == nil {
			t.Errorf("shard cell without data-shard or data-status: %s", c)
			continue
		}
		n, _ := strconv.Atoi(id[1])
		seen[n] = true
		if n < 0 || n >= shards || st[1] != want[n] || !strings.Contains(c, `class="shard `+want[n]+`"`) {
			t.Errorf("shard cell %s, want status %q", c, want[n])
		}
	}
	if len(seen) != shards {
		t.Errorf("the DOM shows %d distinct shards, want %d", len(seen), shards)
	}
	for _, s := range []string{"cluster_exited", "shard_resumed"} {
		if !strings.Contains(dom, s) {
			t.Errorf("the page's recent events do not show %s", s)
		}
	}
}

// TestReadyzCoversOwnedClustersOnly runs one bot with two launchers, one
// cluster each: a crash of B's cluster makes B's /readyz answer 503 while
// A's stays 200, and both export the same bot-wide shard figures.
func TestReadyzCoversOwnedClustersOnly(t *testing.T) {
	addrA, addrB := freeAddr(t), freeAddr(t)
	a := newFleet(t, fleetOptions{shards: 8, clusters: 1, maxConcurrency: 16,
		env: []string{"MEGANE_TOTAL_CLUSTERS=2", "MEGANE_LEASE_TTL=" + coopLeaseTTL.String(), "MEGANE_HTTP_ADDR=" + addrA}})
	a.start()
	a.waitOwnsReady(1, 60*time.Second)
	b := a.peer("MEGANE_CLUSTERS=1", "MEGANE_HTTP_ADDR="+addrB)
	b.start()
	stB := b.waitOwnsReady(1, 60*time.Second)
	ma, mb := &monitored{fleet: a, base: "http://" + addrA}, &monitored{fleet: b, base: "http://" + addrB}
	for _, m := range []*monitored{ma, mb} {
		testwait.For(t, 15*time.Second, m.base+"/readyz answering 200", func() bool {
			code, _, err := m.get("/readyz")
			return err == nil && code == http.StatusOK
		})
		testwait.Problems(t, 15*time.Second, m.base+"/metrics showing the whole bot", func() []string {
			f, err := m.scrape()
			if err != nil {
				return []string{err.Error()}
			}
			var p []string
			if v := sum(f, "megane_shards", map[string]string{"status": "ready"}); v != 8 {
				p = append(p, "ready shards: "+strconv.FormatFloat(v, 'g', -1, 64))
			}
			if v := sum(f, "megane_launchers", nil); v != 2 {
				p = append(p, "launchers: "+strconv.FormatFloat(v, 'g', -1, 64))
			}
			if v := sum(f, "megane_launcher_clusters", map[string]string{"state": "ready"}); v != 1 {
				p = append(p, "this launcher's ready clusters: "+strconv.FormatFloat(v, 'g', -1, 64))
			}
			return p
		})
	}

	c := stB.Clusters[0]
	if err := syscall.Kill(c.PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	var body string
	testwait.For(t, 10*time.Second, "B's /readyz answering 503 while its cluster restarts", func() bool {
		code, b, err := mb.get("/readyz")
		body = b
		return err == nil && code == http.StatusServiceUnavailable
	})
	if code, b, err := ma.get("/readyz"); err != nil || code != http.StatusOK {
		t.Errorf("A's /readyz while B's cluster %d restarts: %d %s %v", c.ID, code, b, err)
	}
	if !strings.Contains(body, `"`+strconv.Itoa(c.ID)+`":`) {
		t.Errorf("B's /readyz does not name cluster %d: %s", c.ID, body)
	}
	testwait.For(t, 30*time.Second, "B's /readyz answering 200 again", func() bool {
		code, _, err := mb.get("/readyz")
		return err == nil && code == http.StatusOK
	})
}
