package launcher

import (
	"context"
	"fmt"
)

func (l *Launcher) cluster(id int) (*proc, error) {
	if l.role != RoleLauncher {
		return nil, ErrNotLauncher
	}
	l.mu.Lock()
	running := l.running
	l.mu.Unlock()
	if !running {
		return nil, ErrNotRunning
	}
	if id < 0 || id >= len(l.clusters) {
		return nil, fmt.Errorf("%w: %d (have 0..%d)", ErrUnknownCluster, id, len(l.clusters)-1)
	}
	return l.clusters[id], nil
}

// RestartCluster restarts cluster id: SIGTERM (its shards save their
// sessions), wait for the exit, respawn at once, and wait until the new
// process is ready, its shards having resumed. Other clusters are not
// touched. It also revives a cluster the launcher gave up on. Before
// stopping anything it checks that session_start_limit can pay for the
// shards that have no saved session.
func (l *Launcher) RestartCluster(ctx context.Context, id int) error {
	p, err := l.cluster(id)
	if err != nil {
		return err
	}
	return p.restart(ctx)
}

// RollingRestart restarts every cluster in turn with RestartCluster, each
// once the previous one is ready again, so at most one cluster is down at a
// time. It stops at the first failure.
func (l *Launcher) RollingRestart(ctx context.Context) error {
	if _, err := l.cluster(0); err != nil {
		return err
	}
	if !l.rolling.TryLock() {
		return ErrBusy
	}
	defer l.rolling.Unlock()
	for _, p := range l.clusters {
		if err := p.restart(ctx); err != nil {
			return fmt.Errorf("launcher: rolling restart stopped at cluster %d: %w", p.id, err)
		}
	}
	return nil
}
