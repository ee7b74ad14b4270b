package cluster

import (
	"context"
	"sync"
)

// startLoops starts the writer (sessions, statuses, events), the status
// poller, the healer and the heartbeat. They run on ctx, which Run's cancellation does
// not reach: stop ends them itself once the final state is written.
func (r *runner) startLoops(ctx context.Context) *loops {
	l := &loops{}
	workCtx, cancelWork := context.WithCancel(ctx)
	beatCtx, cancelBeat := context.WithCancel(ctx)
	l.workCtx, l.cancelWork, l.cancelBeat = workCtx, cancelWork, cancelBeat
	l.work.Go(func() { r.writer(workCtx) })
	l.work.Go(func() { r.poller(workCtx) })
	l.work.Go(func() { r.heal(workCtx) })
	l.beat.Go(func() { r.heartbeat(beatCtx) })
	return l
}

// loops are the cluster's background goroutines, stopped in two steps: the
// writer and the status poller before the final save, the heartbeat last.
type loops struct {
	workCtx                context.Context
	cancelWork, cancelBeat context.CancelFunc
	work, beat             sync.WaitGroup
}

func (l *loops) stopWork() { l.cancelWork(); l.work.Wait() }
func (l *loops) stopBeat() { l.cancelBeat(); l.beat.Wait() }
