package monitor

import (
	"bytes"
	_ "embed"
	"fmt"
	"html/template"
	"net/http"
	"slices"
	"time"
)

// The status page: HTML rendered here from the Snapshot, and a script that
// polls /api/status and redraws it in place. Both are embedded, so the page
// works offline, with no build step.
var (
	//go:embed assets/page.html
	pageHTML string
	//go:embed assets/status.js
	statusJS []byte
)

var pageTmpl = template.Must(template.New("page").Funcs(template.FuncMap{
	"mib": func(b int64) string {
		if b <= 0 {
			return "-"
		}
		return fmt.Sprintf("%.1f MiB", float64(b)/(1<<20))
	},
	"dur": func(s float64) string {
		if s <= 0 {
			return "-"
		}
		return (time.Duration(s) * time.Second).String()
	},
}).Parse(pageHTML))

// pageData is what the page template renders.
type pageData struct {
	*Snapshot
	StatusOrder []string
	// Recent are the events, newest first.
	Recent []Event
}

func (s *Server) page(w http.ResponseWriter, r *http.Request) {
	snap, _, err := s.snapshot(r.Context())
	if err != nil {
		http.Error(w, "cannot read the bot from Redis: "+err.Error(), http.StatusServiceUnavailable)
		return
	}
	recent := slices.Clone(snap.Events)
	slices.Reverse(recent)
	var buf bytes.Buffer
	if err := pageTmpl.Execute(&buf, pageData{Snapshot: snap, StatusOrder: shardStatuses, Recent: recent}); err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(buf.Bytes())
}

func (s *Server) script(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "text/javascript; charset=utf-8")
	_, _ = w.Write(statusJS)
}
