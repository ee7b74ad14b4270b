package monitor

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/megane-go/megane/clusterhash"
	"github.com/megane-go/megane/control"
	"github.com/megane-go/megane/inspect"
	"github.com/megane-go/megane/lifecycle"
	"github.com/megane-go/megane/shardmap"
	"github.com/megane-go/megane/stats"
)

// StatusVersion is the version of Snapshot, the JSON document GET
// /api/status returns. A field's meaning never changes within a version;
// fields may be added.
const StatusVersion = 1

// recentEvents is how many lifecycle events a Snapshot carries.
const recentEvents = 20

// Shard statuses as the status page and megane_shards show them: the
// statuses package shardstatus writes, and unknown for a shard no cluster
// wrote a status for yet.
var shardStatuses = []string{"ready", "resuming", "connecting", "disconnected", "stopped", "unknown"}

// Snapshot is the whole bot as Redis shows it, plus what the launcher
// serving the endpoint supervises: the document of GET /api/status, and
// what /metrics exports.
type Snapshot struct {
	// Version is StatusVersion.
	Version   int       `json:"version"`
	At        time.Time `json:"at"`
	Namespace string    `json:"namespace"`
	// ShardCount is the plan's shard count.
	ShardCount int `json:"shard_count"`
	// ShardsByStatus counts the shards per status (every status of
	// shardStatuses is present, with 0 when no shard has it).
	ShardsByStatus map[string]int `json:"shards_by_status"`
	Shards         []Shard        `json:"shards"`
	Clusters       []Cluster      `json:"clusters"`
	Services       []Service      `json:"services"`
	// Launcher is the launcher serving this endpoint; nil outside one.
	Launcher *Launcher `json:"launcher,omitempty"`
	// Launchers lists the live launchers when several run the bot.
	Launchers []Launcher `json:"launchers,omitempty"`
	Budget    Budget     `json:"budget"`
	// Events are the newest lifecycle events, oldest first.
	Events []Event `json:"events"`
}

// Shard is one shard's live state.
type Shard struct {
	ID      int `json:"id"`
	Cluster int `json:"cluster"`
	// Status is ready, resuming, connecting (identifying), disconnected,
	// stopped, or unknown.
	Status    string `json:"status"`
	LatencyMS int    `json:"latency_ms"`
	// Guilds is -1 when no cluster wrote a count yet.
	Guilds int `json:"guilds"`
}

// Cluster is one cluster's state and its process's figures.
type Cluster struct {
	ID int `json:"id"`
	// Status is what the cluster hash says (starting, ready, stopping,
	// stopped, failed); Supervisor is its launcher's supervision state.
	Status     string `json:"status"`
	Supervisor string `json:"supervisor,omitempty"`
	// Alive reports whether its heartbeat key is present.
	Alive    bool   `json:"alive"`
	Shards   string `json:"shards"`
	PID      int    `json:"pid"`
	Host     string `json:"host,omitempty"`
	Owner    string `json:"owner,omitempty"`
	Unowned  bool   `json:"unowned,omitempty"`
	Restarts int    `json:"restarts"`
	Process
}

// Service is one copy of a service and its process's figures.
type Service struct {
	Name string `json:"name"`
	Copy int    `json:"copy"`
	// State is the supervision state when the launcher serving this
	// endpoint runs the copy, else "".
	State    string `json:"state,omitempty"`
	Restarts int    `json:"restarts"`
	PID      int    `json:"pid"`
	Process
}

// Process holds a process's published statistics (package stats); zero
// when it has not published any.
type Process struct {
	CPUPercent    float64 `json:"cpu_percent"`
	RSSBytes      int64   `json:"rss_bytes"`
	UptimeSeconds float64 `json:"uptime_seconds"`
	// StatsAt is when the figures were published (zero: never).
	StatsAt time.Time `json:"stats_at,omitzero"`
}

// Launcher is one launcher.
type Launcher struct {
	// ID is the launcher's id with several launchers, "launcher" with one.
	ID   string `json:"id"`
	Host string `json:"host,omitempty"`
	PID  int    `json:"pid,omitempty"`
	// Clusters lists the clusters it runs (for the serving launcher: with
	// their supervision states in ClusterStates).
	Clusters      []int          `json:"clusters"`
	ClusterStates map[int]string `json:"cluster_states,omitempty"`
	// Ready reports whether every cluster it runs is ready (serving
	// launcher only).
	Ready bool `json:"ready"`
}

// Budget is the session-start budget and identify concurrency.
type Budget struct {
	Total          int       `json:"total"`
	Remaining      int       `json:"remaining"`
	ResetAt        time.Time `json:"reset_at,omitzero"`
	MaxConcurrency int       `json:"max_concurrency"`
}

// Event is one lifecycle event.
type Event struct {
	At      time.Time `json:"at"`
	Type    string    `json:"type"`
	Cluster int       `json:"cluster"`
	Shard   int       `json:"shard"`
	Service string    `json:"service,omitempty"`
	Detail  string    `json:"detail,omitempty"`
}

// read builds a Snapshot from Redis and the local status, and returns the
// stats reports it read too (the collector exports more of them).
func (s *Server) read(ctx context.Context) (*Snapshot, []stats.Report, error) {
	ov, err := inspect.New(s.opts.Redis, s.opts.Keys).Overview(ctx)
	if err != nil {
		return nil, nil, err
	}
	reports, err := stats.ReadAll(ctx, s.opts.Redis, s.opts.Keys, 0)
	if err != nil {
		return nil, nil, err
	}
	evs, err := lifecycle.Last(ctx, s.opts.Redis, s.opts.Keys, recentEvents)
	if err != nil {
		return nil, nil, err
	}
	snap := &Snapshot{
		Version: StatusVersion, At: time.Now(), Namespace: ov.Namespace, ShardCount: ov.ShardCount,
		ShardsByStatus: map[string]int{},
		Budget: Budget{Total: ov.Gateway.Total, Remaining: ov.Gateway.Remaining, ResetAt: ov.Gateway.ResetAt,
			MaxConcurrency: ov.Gateway.MaxConcurrency},
		Shards: []Shard{}, Clusters: []Cluster{}, Services: []Service{}, Events: []Event{},
	}
	for _, st := range shardStatuses {
		snap.ShardsByStatus[st] = 0
	}
	for _, sh := range ov.Shards {
		st := sh.Status
		if !knownShardStatus(st) {
			st = "unknown"
		}
		snap.ShardsByStatus[st]++
		snap.Shards = append(snap.Shards, Shard{ID: sh.ID, Cluster: sh.Cluster, Status: st, LatencyMS: sh.LatencyMS, Guilds: sh.Guilds})
	}
	byName := map[string]stats.Report{}
	for _, r := range reports {
		byName[r.Name] = r
	}
	for _, c := range ov.Clusters {
		rec := clusterhash.Parse(c.Fields)
		snap.Clusters = append(snap.Clusters, Cluster{
			ID: c.ID, Status: orUnknown(c.Status), Supervisor: rec.Supervisor, Alive: c.Alive,
			Shards: shardmap.FormatRanges(c.Shards), PID: rec.PID, Host: rec.Host,
			Owner: c.Owner, Unowned: c.Unowned, Restarts: rec.Restarts,
			Process: processOf(byName["cluster:"+strconv.Itoa(c.ID)]),
		})
	}
	var local control.Status
	var localErr error = errNoLocal
	if s.opts.Local != nil {
		local, localErr = s.opts.Local()
	}
	localSvc := map[string]control.ServiceStatus{}
	if localErr == nil {
		for _, sv := range local.Services {
			localSvc[sv.Name+"#"+strconv.Itoa(sv.Copy)] = sv
		}
	}
	for _, r := range reports {
		parts := strings.Split(r.Name, ":")
		if r.Role() != "service" || len(parts) != 3 {
			continue
		}
		cp, err := strconv.Atoi(parts[2])
		if err != nil {
			continue
		}
		pid, _ := r.Int("pid")
		sv := Service{Name: parts[1], Copy: cp, PID: int(pid), Process: processOf(r)}
		if l, ok := localSvc[sv.Name+"#"+parts[2]]; ok {
			sv.State, sv.Restarts = string(l.State), l.Restarts
		}
		snap.Services = append(snap.Services, sv)
	}
	sort.Slice(snap.Services, func(i, j int) bool {
		a, b := snap.Services[i], snap.Services[j]
		return a.Name < b.Name || (a.Name == b.Name && a.Copy < b.Copy)
	})
	for _, l := range ov.Launchers {
		snap.Launchers = append(snap.Launchers, Launcher{ID: l.ID, Host: l.Host, PID: l.PID, Clusters: l.Owned})
	}
	if localErr == nil {
		snap.Launcher = localLauncher(local)
	} else if s.opts.Local != nil {
		snap.Launcher = &Launcher{ID: s.launcherID(), Clusters: []int{}}
	}
	for _, ev := range evs {
		snap.Events = append(snap.Events, Event{At: ev.At, Type: string(ev.Type), Cluster: ev.Cluster, Shard: ev.Shard,
			Service: ev.Service, Detail: ev.Detail})
	}
	return snap, reports, nil
}

// localLauncher describes the serving launcher from its own status.
func localLauncher(st control.Status) *Launcher {
	l := &Launcher{ID: "launcher", Clusters: []int{}, ClusterStates: map[int]string{}, Ready: len(st.Clusters) > 0}
	if st.Launcher != nil {
		l.ID, l.Host, l.PID = st.Launcher.ID, st.Launcher.Host, st.Launcher.PID
	}
	for _, c := range st.Clusters {
		l.Clusters = append(l.Clusters, c.ID)
		l.ClusterStates[c.ID] = string(c.State)
		if c.State != control.StateReady {
			l.Ready = false
		}
	}
	return l
}

// processOf reads a process's figures from its report.
func processOf(r stats.Report) Process {
	var p Process
	p.CPUPercent, _ = r.Float("cpu_percent")
	rss, _ := r.Int("rss_bytes")
	p.RSSBytes = rss
	p.UptimeSeconds, _ = r.Float("uptime_seconds")
	if ms, ok := r.Int("updated_at"); ok && ms > 0 {
		p.StatsAt = time.UnixMilli(ms)
	}
	return p
}

func knownShardStatus(s string) bool {
	for _, k := range shardStatuses {
		if s == k {
			return true
		}
	}
	return false
}

func orUnknown(s string) string {
	if s == "" {
		return "unknown"
	}
	return s
}

// errNoLocal means the server runs outside a launcher (Options.Local nil).
var errNoLocal = fmt.Errorf("monitor: no local launcher")
