package redisipc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sort"
	"time"
)

// Answer is one node's reply to a Gather.
type Answer struct {
	// From is the answering node's address.
	From string
	// Instance is the answering process.
	Instance string
	// Payload is the handler's result (JSON for Eval).
	Payload []byte
	// Err is the handler's error as a *RemoteError, or nil.
	Err error
}

// Decode unmarshals the JSON payload into v, or returns the answer's error.
func (a Answer) Decode(v any) error {
	if a.Err != nil {
		return a.Err
	}
	return json.Unmarshal(a.Payload, v)
}

// Gathered is the result of a Gather or Eval.
type Gathered struct {
	// Answers holds one answer per responding instance, sorted by address.
	Answers []Answer
	// Missing lists the addresses of expected targets that did not answer
	// before the deadline: live nodes that stayed silent, and clusters the
	// shard map names that have no live node at all.
	Missing []string
	// MissingInstances lists the silent live instances behind Missing.
	MissingInstances []string
}

// Gather broadcasts a request to target — "clusters", "services", "all",
// or one address such as "cluster:3" or "service:x" — and collects the
// answers of every live instance until all of them answered or ctx's
// deadline passed (Options.CallTimeout when ctx has none). It does not fail
// because some targets were silent: they are listed in Missing. It returns
// ErrNoResponders (with a Gathered listing what is missing) when no live
// node matches the target.
func (n *Node) Gather(ctx context.Context, target, op string, payload []byte) (res *Gathered, err error) {
	start := time.Now()
	defer func() { n.calls.observe(op, target, time.Since(start), err) }()
	if n.closed.Load() {
		return nil, ErrClosed
	}
	if len(payload) > n.opts.MaxPayload {
		return nil, fmt.Errorf("%w: %d bytes to %s, limit %d", ErrPayloadTooLarge, len(payload), target, n.opts.MaxPayload)
	}
	if err := checkTarget(target); err != nil {
		return nil, err
	}
	ctx, cancel := n.withDeadline(ctx)
	defer cancel()
	snap, err := n.dir.refresh(ctx, time.Now().Add(-minRefreshGap))
	if err != nil {
		return nil, err
	}
	expected := map[string]string{} // instance -> addr
	liveAddrs := map[string]bool{}
	for _, m := range snap.members {
		if matchTarget(target, m.addr) {
			expected[m.inst] = m.addr
			liveAddrs[m.addr] = true
		}
	}
	g := &Gathered{}
	// Clusters the shard map knows but nobody serves are missing too: a
	// stopped cluster must show up, not silently shrink the answer.
	if target == TargetClusters || target == TargetAll || kindOf(target) == KindCluster {
		if sm, err := n.shards.get(ctx, n); err == nil {
			for _, c := range sm.clusters {
				a := ClusterAddr(c)
				if !liveAddrs[a] && matchTarget(target, a) {
					g.Missing = append(g.Missing, a)
				}
			}
		}
	}
	if len(expected) == 0 {
		sort.Strings(g.Missing)
		return g, fmt.Errorf("%w: %s", ErrNoResponders, target)
	}
	dl, _ := ctx.Deadline()
	id := n.nextID()
	pc := n.pending.add(id, len(expected)+64)
	defer n.pending.remove(id)
	env := envelope{Kind: kindBroadcast, Deadline: dl.UnixMilli(), ID: id, Op: op, From: n.addr,
		Instance: n.inst, To: target, ReplyTo: n.inst, Payload: payload}
	if err := n.enqueue(ctx, outMsg{op: outPublish, key: n.ks.Broadcast(), data: env.encode(), done: pc.failer()}); err != nil {
		return nil, n.waitErr(ctx, target, op, err)
	}
	waiting := len(expected)
	seen := map[string]bool{}
collect:
	for waiting > 0 {
		select {
		case r := <-pc.ch:
			if r.err != nil {
				if errors.Is(r.err, ErrClosed) {
					return nil, r.err
				}
				return nil, fmt.Errorf("redisipc: broadcast %s to %s: %w", op, target, r.err)
			}
			e := r.env
			if seen[e.Instance] {
				continue
			}
			seen[e.Instance] = true
			out, err := e.result()
			g.Answers = append(g.Answers, Answer{From: e.From, Instance: e.Instance, Payload: out, Err: err})
			if _, ok := expected[e.Instance]; ok {
				waiting--
			}
		case <-ctx.Done():
			break collect
		case <-n.closing:
			return nil, ErrClosed
		}
	}
	for inst, addr := range expected {
		if !seen[inst] {
			g.MissingInstances = append(g.MissingInstances, inst)
			if !slices.Contains(g.Missing, addr) {
				g.Missing = append(g.Missing, addr)
			}
		}
	}
	sort.Slice(g.Answers, func(i, j int) bool {
		if g.Answers[i].From != g.Answers[j].From {
			return g.Answers[i].From < g.Answers[j].From
		}
		return g.Answers[i].Instance < g.Answers[j].Instance
	})
	sort.Strings(g.Missing)
	sort.Strings(g.MissingInstances)
	return g, nil
}
