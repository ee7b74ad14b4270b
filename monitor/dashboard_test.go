package monitor

import (
	"encoding/json"
	"os"
	"regexp"
	"strings"
	"testing"

	dto "github.com/prometheus/client_model/go"

	"github.com/megane-go/megane/control"
	"github.com/megane-go/megane/internal/testredis"
)

// dashboardPath is the Grafana dashboard docker compose provisions.
const dashboardPath = "../monitoring/grafana/dashboards/megane.json"

// TestDashboardQueriesExportedMetrics loads the Grafana dashboard and
// checks that every panel has a query and that every metric a query names
// is one /metrics really exports.
func TestDashboardQueriesExportedMetrics(t *testing.T) {
	b, err := os.ReadFile(dashboardPath)
	if err != nil {
		t.Fatal(err)
	}
	var dash struct {
		UID    string `json:"uid"`
		Title  string `json:"title"`
		Panels []struct {
			Title   string `json:"title"`
			Type    string `json:"type"`
			Targets []struct {
				Expr string `json:"expr"`
			} `json:"targets"`
		} `json:"panels"`
	}
	if err := json.Unmarshal(b, &dash); err != nil {
		t.Fatalf("%s is not valid JSON: %v", dashboardPath, err)
	}
	if dash.UID == "" || dash.Title == "" || len(dash.Panels) == 0 {
		t.Fatalf("dashboard has no uid, title or panels")
	}

	rdb, ks := testredis.Real(t)
	world(t, rdb, ks)
	s := New(Options{Redis: rdb, Keys: ks, Local: localStatus(control.StateReady)})
	fams := scrape(t, s.Handler())
	exported := func(name string) bool {
		if f, ok := fams[name]; ok && len(f.GetMetric()) > 0 {
			return true
		}
		for _, suffix := range []string{"_bucket", "_sum", "_count"} {
			if base, ok := strings.CutSuffix(name, suffix); ok {
				if f, ok := fams[base]; ok && f.GetType() == dto.MetricType_HISTOGRAM {
					return true
				}
			}
		}
		return false
	}
	metric := regexp.MustCompile(`megane_[a-z0-9_]+`)
	want := map[string]bool{}
	for _, p := range dash.Panels {
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, q := range p.Targets {
			names := metric.FindAllString(q.Expr, -1)
			if len(names) == 0 {
				t.Errorf("panel %q: query %q names no megane_ metric", p.Title, q.Expr)
			}
			for _, n := range names {
				want[n] = true
				if !exported(n) {
					t.Errorf("panel %q: query %q names %s, which /metrics does not export", p.Title, q.Expr, n)
				}
			}
		}
	}
	// What the issue asks the dashboard to show.
	for _, n := range []string{"megane_shards", "megane_shard_latency_seconds", "megane_gateway_events_total",
		"megane_ipc_request_duration_seconds_bucket", "megane_cluster_restarts_total", "megane_process_resident_memory_bytes"} {
		if !want[n] {
			t.Errorf("no panel queries %s", n)
		}
	}
}
