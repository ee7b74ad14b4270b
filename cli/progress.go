package cli

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/megane-go/megane/lifecycle"
)

// eventProgress prints, on the progress writer, the lifecycle events a long
// command causes while it waits for the launcher's answer (a restart: the
// cluster exiting, its shards resuming, the cluster ready), so its user
// sees it move instead of a silent wait. Every progressInterval without an
// event it prints that it is still waiting.
type eventProgress struct {
	e    *env
	mu   sync.Mutex
	stop func()
}

// progressInterval is how long a long command stays silent at most.
const progressInterval = 5 * time.Second

// tailEvents calls each, on a goroutine of its own, with every batch of
// lifecycle events published from now on, and with an empty batch after
// each quiet second, until the returned func is called (it waits for the
// goroutine to end).
func (e *env) tailEvents(ctx context.Context, each func([]lifecycle.Event)) (stop func()) {
	from := "0-0"
	if msgs, err := e.rdb.XRevRangeN(ctx, e.ks.Events(), "+", "-", 1).Result(); err == nil && len(msgs) > 0 {
		from = msgs[0].ID
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for ctx.Err() == nil {
			evs, next, err := lifecycle.Follow(ctx, e.rdb, e.ks, from, 100, time.Second)
			if err != nil {
				return
			}
			from = next
			each(evs)
		}
	}()
	return func() { cancel(); <-done }
}

// followEvents starts printing the events keep accepts, published from
// now on, until stop; what names what the command waits for.
func (e *env) followEvents(ctx context.Context, what string, keep func(lifecycle.Event) bool) *eventProgress {
	p := &eventProgress{e: e}
	start, quiet := time.Now(), time.Now()
	fmt.Fprintf(e.errOut(), "waiting for %s\n", what)
	p.stop = e.tailEvents(ctx, func(evs []lifecycle.Event) {
		for _, ev := range evs {
			if keep(ev) {
				p.print(describeEvent(ev))
				quiet = time.Now()
			}
		}
		if time.Since(quiet) >= progressInterval {
			p.print(fmt.Sprintf("still waiting for %s (%s)", what, time.Since(start).Round(time.Second)))
			quiet = time.Now()
		}
	})
	return p
}

func (p *eventProgress) print(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.e.errOut(), "  %s\n", line)
}

// describeEvent is one progress line: "cluster 2: shard 9 shard_resumed (detail)".
func describeEvent(ev lifecycle.Event) string {
	var b strings.Builder
	switch {
	case ev.Service != "":
		b.WriteString("service " + ev.Service + ": ")
	case ev.Cluster >= 0:
		b.WriteString("cluster " + strconv.Itoa(ev.Cluster) + ": ")
	}
	if ev.Shard >= 0 {
		b.WriteString("shard " + strconv.Itoa(ev.Shard) + " ")
	}
	b.WriteString(string(ev.Type))
	if ev.Detail != "" {
		b.WriteString(" (" + ev.Detail + ")")
	}
	return b.String()
}

// clusterEvents keeps the events about one cluster.
func clusterEvents(id int) func(lifecycle.Event) bool {
	return func(ev lifecycle.Event) bool { return ev.Cluster == id && ev.Service == "" }
}

// serviceEvents keeps the events about one service.
func serviceEvents(name string) func(lifecycle.Event) bool {
	return func(ev lifecycle.Event) bool { return ev.Service == name }
}

// clusterSetEvents keeps the cluster events (not the shard ones) about
// the clusters ids.
func clusterSetEvents(ids []int) func(lifecycle.Event) bool {
	set := map[int]bool{}
	for _, id := range ids {
		set[id] = true
	}
	return func(ev lifecycle.Event) bool { return set[ev.Cluster] && ev.Shard < 0 && ev.Service == "" }
}
