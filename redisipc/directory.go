package redisipc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
)

// NodeInfo describes one live node, as registered in Redis.
type NodeInfo struct {
	Instance  string    `json:"instance"`
	Addr      string    `json:"addr"`
	Kind      string    `json:"kind"`
	PID       int       `json:"pid"`
	Host      string    `json:"host"`
	Group     bool      `json:"group"`
	StartedAt time.Time `json:"started_at"`
	// Expires is when the registration lapses unless heartbeated.
	Expires time.Time `json:"expires"`
}

// LiveNodes lists the nodes whose registration has not expired, sorted by
// address then instance. It reads only the registry, so megane-cli can use
// it without being a node.
func LiveNodes(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace) ([]NodeInfo, error) {
	zs, err := rdb.ZRangeByScoreWithScores(ctx, ks.Nodes(), &redis.ZRangeBy{
		Min: "(" + strconv.FormatInt(time.Now().UnixMilli(), 10), Max: "+inf",
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("redisipc: list nodes: %w", err)
	}
	pipe := rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(zs))
	for i, z := range zs {
		cmds[i] = pipe.HGetAll(ctx, ks.Node(z.Member.(string)))
	}
	if len(zs) > 0 {
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("redisipc: read nodes: %w", err)
		}
	}
	out := make([]NodeInfo, 0, len(zs))
	for i, z := range zs {
		h := cmds[i].Val()
		if h["addr"] == "" {
			continue // registration expired between the two reads
		}
		pid, _ := strconv.Atoi(h["pid"])
		started, _ := strconv.ParseInt(h["started_at"], 10, 64)
		out = append(out, NodeInfo{
			Instance: z.Member.(string), Addr: h["addr"], Kind: h["kind"], PID: pid, Host: h["host"],
			Group: h["group"] == "1", StartedAt: time.UnixMilli(started), Expires: time.UnixMilli(int64(z.Score)),
		})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Addr != out[j].Addr {
			return out[i].Addr < out[j].Addr
		}
		return out[i].Instance < out[j].Instance
	})
	return out, nil
}

// heartbeat (re)writes the registration. Writing every field each time lets
// a node recover by itself from a flushed or restarted Redis.
func (n *Node) heartbeat(ctx context.Context) error {
	now := time.Now()
	ttl := n.opts.HeartbeatTTL
	group := "0"
	if n.opts.Group {
		group = "1"
	}
	pipe := n.rdb.Pipeline()
	// The streams first: a sender that finds the address live must find
	// its inbox too. They outlive a crash only briefly.
	streams := n.queueRefresh(ctx, pipe)
	pipe.HSet(ctx, n.ks.Node(n.inst), "addr", n.addr, "instance", n.inst, "kind", n.kind,
		"pid", os.Getpid(), "host", n.host, "started_at", n.started.UnixMilli(), "group", group)
	pipe.PExpire(ctx, n.ks.Node(n.inst), ttl)
	if n.serving.Load() && !n.closed.Load() {
		pipe.ZAdd(ctx, n.ks.Nodes(), redis.Z{Score: float64(now.Add(ttl).UnixMilli()), Member: n.inst})
		// The index goes when its last live node went: no one would sweep it.
		pipe.PExpire(ctx, n.ks.Nodes(), n.streamTTL())
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	return n.recreate(ctx, streams)
}

func (n *Node) heartbeatLoop() {
	defer n.loopsWG.Done()
	t := time.NewTicker(n.opts.HeartbeatTTL / 3)
	defer t.Stop()
	for {
		select {
		case <-n.closing:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(n.base, n.opts.HeartbeatTTL/3)
		if err := n.heartbeat(ctx); err != nil && !n.closed.Load() {
			n.log.Warn("redisipc: heartbeat", "error", err)
		}
		n.sweep(ctx)
		cancel()
	}
}

// sweep removes registrations that expired (their processes died) along
// with their reply streams. Every node sweeps; the work is idempotent.
func (n *Node) sweep(ctx context.Context) {
	dead, err := n.rdb.ZRangeByScore(ctx, n.ks.Nodes(), &redis.ZRangeBy{
		Min: "-inf", Max: strconv.FormatInt(time.Now().UnixMilli(), 10), Count: 64,
	}).Result()
	if err != nil || len(dead) == 0 {
		return
	}
	pipe := n.rdb.Pipeline()
	for _, inst := range dead {
		pipe.Del(ctx, n.ks.Replies(inst))
		pipe.ZRem(ctx, n.ks.Nodes(), inst)
	}
	_, _ = pipe.Exec(ctx)
}

// member is one live instance and its address.
type member struct{ inst, addr string }

type snapshot struct {
	at      time.Time
	members []member
	addrs   map[string]int // address -> live instances
}

// directory is the node's cached view of the live-node registry, so a call
// costs no extra round trip to check its target is alive.
type directory struct {
	n      *Node
	snap   atomic.Pointer[snapshot]
	mu     sync.Mutex // serialises refreshes
	addrOf map[string]string
}

func newDirectory(n *Node) *directory {
	d := &directory{n: n, addrOf: map[string]string{}}
	d.snap.Store(&snapshot{addrs: map[string]int{}})
	return d
}

// minRefreshGap keeps a storm of calls to a missing address from turning
// into a storm of registry reads.
const minRefreshGap = 20 * time.Millisecond

// refresh re-reads the registry unless the snapshot was read after
// notBefore. Reads are at least minRefreshGap apart; a caller that needs a
// newer view than the last read waits out the gap instead of being told
// about a stale one.
func (d *directory) refresh(ctx context.Context, notBefore time.Time) (*snapshot, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.snap.Load()
	if !s.at.Before(notBefore) {
		return s, nil
	}
	if wait := minRefreshGap - time.Since(s.at); wait > 0 {
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		}
	}
	rdb, ks := d.n.rdb, d.n.ks
	now := time.Now()
	insts, err := rdb.ZRangeByScore(ctx, ks.Nodes(), &redis.ZRangeBy{
		Min: "(" + strconv.FormatInt(now.UnixMilli(), 10), Max: "+inf",
	}).Result()
	if err != nil {
		return nil, fmt.Errorf("redisipc: read live nodes: %w", err)
	}
	var unknown []string
	for _, i := range insts {
		if _, ok := d.addrOf[i]; !ok {
			unknown = append(unknown, i)
		}
	}
	if len(unknown) > 0 {
		pipe := rdb.Pipeline()
		cmds := make([]*redis.StringCmd, len(unknown))
		for j, i := range unknown {
			cmds[j] = pipe.HGet(ctx, ks.Node(i), "addr")
		}
		_, _ = pipe.Exec(ctx)
		for j, i := range unknown {
			if a := cmds[j].Val(); a != "" {
				d.addrOf[i] = a
			}
		}
	}
	s = &snapshot{at: now, addrs: map[string]int{}}
	live := make(map[string]string, len(insts))
	for _, i := range insts {
		a, ok := d.addrOf[i]
		if !ok {
			continue
		}
		live[i] = a
		s.members = append(s.members, member{inst: i, addr: a})
		s.addrs[a]++
	}
	d.addrOf = live // forget instances that are gone
	d.snap.Store(s)
	return s, nil
}

// current returns a snapshot no older than the refresh interval.
func (d *directory) current(ctx context.Context) (*snapshot, error) {
	s := d.snap.Load()
	if time.Since(s.at) < 2*d.n.opts.DirectoryRefresh {
		return s, nil
	}
	return d.refresh(ctx, time.Now().Add(-d.n.opts.DirectoryRefresh))
}

// hasAddr reports whether a live node serves addr, re-reading the registry
// when the cached view does not have it.
func (d *directory) hasAddr(ctx context.Context, addr string) (bool, error) {
	s, err := d.current(ctx)
	if err != nil {
		return false, err
	}
	if s.addrs[addr] > 0 {
		return true, nil
	}
	s, err = d.refresh(ctx, time.Now())
	if err != nil {
		return false, err
	}
	return s.addrs[addr] > 0, nil
}

func (n *Node) directoryLoop() {
	defer n.loopsWG.Done()
	t := time.NewTicker(n.opts.DirectoryRefresh)
	defer t.Stop()
	for {
		select {
		case <-n.closing:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(n.base, n.opts.DirectoryRefresh)
		if _, err := n.dir.refresh(ctx, time.Now().Add(-n.opts.DirectoryRefresh/2)); err != nil && !n.closed.Load() {
			n.log.Warn("redisipc: refresh directory", "error", err)
		}
		cancel()
	}
}

// matchTarget reports whether the node at addr is among a broadcast's
// targets. "all" means every cluster, service and the launcher; CLI nodes
// are callers and answer only when addressed directly.
func matchTarget(target, addr string) bool {
	switch target {
	case TargetAll:
		return kindOf(addr) != KindCLI
	case TargetClusters:
		return strings.HasPrefix(addr, KindCluster+":")
	case TargetServices:
		return strings.HasPrefix(addr, KindService+":")
	}
	return target == addr
}

func checkTarget(target string) error {
	switch target {
	case TargetAll, TargetClusters, TargetServices:
		return nil
	}
	return checkAddr(target)
}
