package launcher

import (
	"context"
	"errors"
	"fmt"

	"github.com/megane-go/megane/control"
)

// ErrUnknownService is returned for a service name or copy the launcher
// does not run.
var ErrUnknownService = errors.New("launcher: unknown service")

// AllCopies asks RestartService to restart every copy of a service.
const AllCopies = control.AllCopies

// RestartService restarts copy copyN of service name (every copy, one at a
// time, with AllCopies): SIGTERM, wait for the exit, respawn at once and
// wait until the new process is ready, before the next copy. With more
// than one copy the service keeps answering throughout. It also revives a
// copy the launcher gave up on. It stops at the first copy that does not
// become ready.
func (l *Launcher) RestartService(ctx context.Context, name string, copyN int) error {
	if l.role != RoleLauncher {
		return ErrNotLauncher
	}
	l.mu.Lock()
	running := l.running
	l.mu.Unlock()
	if !running {
		return ErrNotRunning
	}
	var procs []*proc
	copies := 0
	for _, p := range l.services {
		if p.service != name {
			continue
		}
		copies++
		if copyN == AllCopies || p.copy == copyN {
			procs = append(procs, p)
		}
	}
	switch {
	case copies == 0:
		return fmt.Errorf("%w: %q", ErrUnknownService, name)
	case len(procs) == 0:
		return fmt.Errorf("%w: %q has no copy %d (has 0..%d)", ErrUnknownService, name, copyN, copies-1)
	}
	for _, p := range procs {
		if err := p.restart(ctx); err != nil {
			return fmt.Errorf("launcher: restart of service %s stopped at copy %d: %w", name, p.copy, err)
		}
	}
	return nil
}
