package launcher

import (
	"context"
	"fmt"
	"sync"

	"github.com/megane-go/megane/leases"
)

// ownership is whether this launcher may run a child: always with one
// launcher per bot, and while it holds the child's lease with several.
type ownership struct {
	mu      sync.Mutex
	owned   bool
	token   uint64        // the lease's fencing token; 0 without leases
	changed chan struct{} // closed and replaced at every change
}

func newOwnership(owned bool) *ownership {
	return &ownership{owned: owned, changed: make(chan struct{})}
}

// get returns whether the child is owned, its token, and a channel closed
// at the next change.
func (o *ownership) get() (bool, uint64, <-chan struct{}) {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.owned, o.token, o.changed
}

func (o *ownership) set(owned bool, token uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.owned == owned && o.token == token {
		return
	}
	o.owned, o.token = owned, token
	close(o.changed)
	o.changed = make(chan struct{})
}

// wait blocks until the child is owned (returning its token) or ctx ends.
func (o *ownership) wait(ctx context.Context) (uint64, bool) {
	for {
		owned, token, changed := o.get()
		if owned {
			return token, true
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return 0, false
		}
	}
}

// leaseName is the name of p's lease.
func (p *proc) leaseName() string {
	if p.kind == kindCluster {
		return leases.ClusterName(p.id)
	}
	return leases.ServiceName(p.service, p.copy)
}

// waitOwned blocks until this launcher may run p, answering restart
// requests meanwhile with ErrNotOwned. It returns the lease token, or false
// when ctx ended.
func (p *proc) waitOwned(ctx context.Context, pending *[]*restartReq) (uint64, bool) {
	for {
		owned, token, changed := p.own.get()
		if owned {
			return token, true
		}
		p.fail(*pending, fmt.Errorf("%w: %s", ErrNotOwned, p.name()))
		*pending = nil
		if p.currentState() != StateNotOwned {
			p.setState(StateNotOwned)
		}
		select {
		case <-changed:
		case req := <-p.restartCh:
			req.done <- fmt.Errorf("%w: %s", ErrNotOwned, p.name())
		case <-ctx.Done():
			return 0, false
		}
	}
}
