// Package monitor serves a bot's metrics, health checks and live status
// page over HTTP: the endpoint every launcher opens on MEGANE_HTTP_ADDR.
//
//	GET /metrics      Prometheus text format, every metric prefixed megane_
//	GET /healthz      200 when the launcher runs and Redis answers, else 503
//	GET /readyz       200 when every cluster this launcher runs is ready, else 503
//	                  (with several launchers: the clusters it holds the leases of)
//	GET /api/status   the Snapshot as JSON (what the page polls)
//	GET /             the status page: server-rendered HTML and a small script
//
// Every figure comes from the bot's shared records in Redis (shard status
// hashes, cluster hashes, the statistics every process publishes, the
// lifecycle events, the gateway budget), read at each scrape. So a scrape of
// any launcher shows the whole bot, and several launchers export the same
// bot-wide values: scrape one of them, or keep one series per job when
// scraping all. Only the megane_launcher_* series are the serving
// launcher's own, labelled with its id. The body of /healthz, /readyz and
// the errors are JSON.
package monitor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/control"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/stats"
)

// DefaultAddr is the address a launcher serves on when MEGANE_HTTP_ADDR is
// unset: loopback only, so nothing is reachable from other hosts unless an
// operator opens it (0.0.0.0:9190 in a container).
const DefaultAddr = "127.0.0.1:9190"

// Off is the MEGANE_HTTP_ADDR value that serves nothing.
const Off = "off"

// DefaultCacheFor is Options.CacheFor's default.
const DefaultCacheFor = time.Second

// Options configures a Server.
type Options struct {
	// Addr is the host:port to listen on ("127.0.0.1:0" picks a free
	// port; Server.Addr tells which). Default DefaultAddr.
	Addr string
	// Redis and Keys are the bot's Redis and namespace. Required.
	Redis redis.UniversalClient
	Keys  keyspace.Keyspace
	// Local returns what the serving launcher supervises (its owned
	// clusters and services); /readyz and the megane_launcher_* metrics
	// come from it. Nil outside a launcher: /readyz then answers 503.
	Local func() (control.Status, error)
	// Logger receives serving errors. Default: discard.
	Logger *slog.Logger
	// CacheFor is how long one read of Redis answers scrapes and page
	// polls, so many viewers cost Redis no more than one. Default
	// DefaultCacheFor.
	CacheFor time.Duration
}

// Server serves the endpoints of one launcher.
type Server struct {
	opts   Options
	log    *slog.Logger
	reg    *prometheus.Registry
	exits  *exitCounter
	mux    *http.ServeMux
	http   *http.Server
	ln     net.Listener
	served chan struct{}

	mu      sync.Mutex
	snap    *Snapshot
	reports []stats.Report
	snapAt  time.Time
	snapErr error
}

// New returns a Server; Start listens.
func New(opts Options) *Server {
	if opts.Addr == "" {
		opts.Addr = DefaultAddr
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.CacheFor <= 0 {
		opts.CacheFor = DefaultCacheFor
	}
	s := &Server{opts: opts, log: opts.Logger, reg: prometheus.NewRegistry(), exits: newExitCounter(opts.Redis, opts.Keys)}
	s.reg.MustRegister(&collector{s: s})
	s.mux = http.NewServeMux()
	s.mux.Handle("GET /metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{
		ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn), ErrorHandling: promhttp.ContinueOnError,
	}))
	s.mux.HandleFunc("GET /healthz", s.healthz)
	s.mux.HandleFunc("GET /readyz", s.readyz)
	s.mux.HandleFunc("GET /api/status", s.apiStatus)
	s.mux.HandleFunc("GET /status.js", s.script)
	s.mux.HandleFunc("GET /{$}", s.page)
	return s
}

// Handler returns the server's routes, for mounting them elsewhere.
func (s *Server) Handler() http.Handler { return s.mux }

// Start listens on Options.Addr and serves in the background. An address
// that is taken fails here, and nothing is served.
func (s *Server) Start() error {
	ln, err := net.Listen("tcp", s.opts.Addr)
	if err != nil {
		return fmt.Errorf("monitor: listen on %s: %w", s.opts.Addr, err)
	}
	s.ln = ln
	s.http = &http.Server{Handler: s.mux, ReadHeaderTimeout: 5 * time.Second, ErrorLog: slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)}
	s.served = make(chan struct{})
	go func() {
		defer close(s.served)
		if err := s.http.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.Warn("monitor: serving stopped", slog.Any("error", err))
		}
	}()
	return nil
}

// Addr returns the address the server listens on (with the port picked
// for port 0), or "" before Start.
func (s *Server) Addr() string {
	if s.ln == nil {
		return ""
	}
	return s.ln.Addr().String()
}

// URL returns the status page's URL, or "" before Start.
func (s *Server) URL() string {
	if s.ln == nil {
		return ""
	}
	return "http://" + s.Addr() + "/"
}

// Close stops serving, waiting for requests in progress until ctx ends.
func (s *Server) Close(ctx context.Context) error {
	if s.http == nil {
		return nil
	}
	err := s.http.Shutdown(ctx)
	<-s.served
	return err
}

// snapshot returns a Snapshot at most CacheFor old.
func (s *Server) snapshot(ctx context.Context) (*Snapshot, []stats.Report, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.snapAt.IsZero() && time.Since(s.snapAt) < s.opts.CacheFor {
		return s.snap, s.reports, s.snapErr
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	s.snap, s.reports, s.snapErr = s.read(ctx)
	s.snapAt = time.Now()
	return s.snap, s.reports, s.snapErr
}

// launcherID names the serving launcher in megane_launcher_* labels.
func (s *Server) launcherID() string {
	if s.opts.Local == nil {
		return ""
	}
	st, err := s.opts.Local()
	if err == nil && st.Launcher != nil {
		return st.Launcher.ID
	}
	return "launcher"
}

// healthReply is the body of /healthz and /readyz.
type healthReply struct {
	Status string `json:"status"` // "ok" or "fail"
	Reason string `json:"reason,omitempty"`
	// NotReady lists the clusters that are not ready, with their states
	// (/readyz only).
	NotReady map[int]string `json:"not_ready,omitempty"`
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	if err := s.opts.Redis.Ping(ctx).Err(); err != nil {
		writeJSON(w, http.StatusServiceUnavailable, healthReply{Status: "fail", Reason: "redis: " + err.Error()})
		return
	}
	if s.opts.Local != nil {
		if _, err := s.opts.Local(); err != nil {
			writeJSON(w, http.StatusServiceUnavailable, healthReply{Status: "fail", Reason: err.Error()})
			return
		}
	}
	writeJSON(w, http.StatusOK, healthReply{Status: "ok"})
}

func (s *Server) readyz(w http.ResponseWriter, r *http.Request) {
	if s.opts.Local == nil {
		writeJSON(w, http.StatusServiceUnavailable, healthReply{Status: "fail", Reason: "not served by a launcher"})
		return
	}
	st, err := s.opts.Local()
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, healthReply{Status: "fail", Reason: err.Error()})
		return
	}
	if len(st.Clusters) == 0 {
		if st.Launcher != nil {
			// One of several launchers, holding no lease now: a standby,
			// ready to take clusters over.
			writeJSON(w, http.StatusOK, healthReply{Status: "ok", Reason: "this launcher owns no cluster now (standby)"})
			return
		}
		writeJSON(w, http.StatusServiceUnavailable, healthReply{Status: "fail", Reason: "this launcher runs no cluster"})
		return
	}
	notReady := map[int]string{}
	for _, c := range st.Clusters {
		if c.State != control.StateReady {
			notReady[c.ID] = string(c.State)
		}
	}
	if len(notReady) > 0 {
		writeJSON(w, http.StatusServiceUnavailable, healthReply{Status: "fail",
			Reason: fmt.Sprintf("%d of %d clusters not ready", len(notReady), len(st.Clusters)), NotReady: notReady})
		return
	}
	writeJSON(w, http.StatusOK, healthReply{Status: "ok"})
}

func (s *Server) apiStatus(w http.ResponseWriter, r *http.Request) {
	snap, _, err := s.snapshot(r.Context())
	if err != nil {
		writeJSON(w, http.StatusServiceUnavailable, healthReply{Status: "fail", Reason: err.Error()})
		return
	}
	writeJSON(w, http.StatusOK, snap)
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}
