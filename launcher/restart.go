package launcher

import (
	"context"
	"fmt"
)

// checkRunning fails with ErrNotLauncher in a child and ErrNotRunning
// while the launcher does not run.
func (l *Launcher) checkRunning() error {
	if l.role != RoleLauncher {
		return ErrNotLauncher
	}
	l.mu.Lock()
	running := l.running
	l.mu.Unlock()
	if !running {
		return ErrNotRunning
	}
	return nil
}

func (l *Launcher) cluster(id int) (*proc, error) {
	if err := l.checkRunning(); err != nil {
		return nil, err
	}
	if id < 0 || id >= len(l.clusters) {
		return nil, fmt.Errorf("%w: %d (have 0..%d)", ErrUnknownCluster, id, len(l.clusters)-1)
	}
	p := l.clusters[id]
	if owned, _, _ := p.own.get(); !owned {
		return nil, fmt.Errorf("%w: cluster %d", ErrNotOwned, id)
	}
	return p, nil
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
