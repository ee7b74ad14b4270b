package launcher

import "github.com/megane-go/megane/control"

// Status is a snapshot of what the launcher supervises. It is the reply of
// control.OpStatus, so it is defined in the light package control.
type Status = control.Status

// ProcessStatus is the supervision state of one child.
type ProcessStatus = control.ProcessStatus

// ClusterStatus is the state of one cluster.
type ClusterStatus = control.ClusterStatus

// ServiceStatus is the state of one copy of a service.
type ServiceStatus = control.ServiceStatus

func (p *proc) status() ProcessStatus {
	p.mu.Lock()
	defer p.mu.Unlock()
	return ProcessStatus{State: p.state, PID: p.pid, Restarts: p.restarts, StartedAt: p.startedAt, ReadyAt: p.readyAt}
}

// Status returns what the launcher supervises. It fails with ErrNotLauncher
// in a child and ErrNotRunning before Run started the children.
func (l *Launcher) Status() (Status, error) {
	if err := l.checkRunning(); err != nil {
		return Status{}, err
	}
	l.mu.Lock()
	st := Status{
		Namespace: l.cfg.Namespace, ShardCount: l.shardCount, MaxConcurrency: l.maxConcurrency,
		AllReady: l.allReady, StartedAt: l.startedAt,
	}
	if l.coop != nil {
		st.Launcher = &control.LauncherInfo{ID: l.coop.holder.ID, Host: l.coop.holder.Host, PID: l.coop.holder.PID,
			Addr: l.coop.addr, Capacity: l.coop.getCapacity(), TotalClusters: len(l.clusters)}
	}
	l.mu.Unlock()
	for _, p := range l.clusters {
		if owned, _, _ := p.own.get(); !owned && l.coop != nil {
			continue // another launcher's, or nobody's: see the leases
		}
		st.Clusters = append(st.Clusters, ClusterStatus{ID: p.id, Shards: p.shards, ProcessStatus: p.status()})
	}
	for _, p := range l.services {
		if owned, _, _ := p.own.get(); !owned && l.coop != nil {
			continue
		}
		st.Services = append(st.Services, ServiceStatus{Name: p.service, Copy: p.copy, ProcessStatus: p.status()})
	}
	return st, nil
}
