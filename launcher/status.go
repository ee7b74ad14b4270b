package launcher

import "time"

// Status is a snapshot of what the launcher supervises.
type Status struct {
	Namespace      string          `json:"namespace"`
	ShardCount     int             `json:"shard_count"`
	MaxConcurrency int             `json:"max_concurrency"`
	AllReady       bool            `json:"all_ready"`
	StartedAt      time.Time       `json:"started_at"`
	Clusters       []ClusterStatus `json:"clusters"`
	Services       []ServiceStatus `json:"services"`
}

// ProcessStatus is the supervision state of one child.
type ProcessStatus struct {
	State State `json:"state"`
	// PID is zero while no process runs (backoff, gave up, stopped).
	PID int `json:"pid"`
	// Restarts counts respawns, requested or after a crash.
	Restarts  int       `json:"restarts"`
	StartedAt time.Time `json:"started_at,omitzero"`
	ReadyAt   time.Time `json:"ready_at,omitzero"`
}

// ClusterStatus is the state of one cluster.
type ClusterStatus struct {
	ID     int   `json:"id"`
	Shards []int `json:"shards"`
	ProcessStatus
}

// ServiceStatus is the state of one copy of a service.
type ServiceStatus struct {
	Name string `json:"name"`
	Copy int    `json:"copy"`
	ProcessStatus
}

func (p *proc) status() ProcessStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return ProcessStatus{State: p.state, PID: p.pid, Restarts: p.restarts, StartedAt: p.startedAt, ReadyAt: p.readyAt}
}

// Status returns what the launcher supervises. It fails with ErrNotLauncher
// in a child and ErrNotRunning before Run started the children.
func (l *Launcher) Status() (Status, error) {
	if _, err := l.cluster(0); err != nil {
		return Status{}, err
	}
	l.mu.Lock()
	st := Status{
		Namespace: l.cfg.Namespace, ShardCount: l.shardCount, MaxConcurrency: l.maxConcurrency,
		AllReady: l.allReady, StartedAt: l.startedAt,
	}
	l.mu.Unlock()
	for _, p := range l.clusters {
		st.Clusters = append(st.Clusters, ClusterStatus{ID: p.id, Shards: p.shards, ProcessStatus: p.status()})
	}
	for _, p := range l.services {
		st.Services = append(st.Services, ServiceStatus{Name: p.service, Copy: p.copy, ProcessStatus: p.status()})
	}
	return st, nil
}
