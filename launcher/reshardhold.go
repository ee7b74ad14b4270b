package launcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"time"

	"github.com/megane-go/megane/control"
	"github.com/megane-go/megane/identify"
	"github.com/megane-go/megane/leases"
	"github.com/megane-go/megane/shardmap"
)

// respawnGate holds a restart between the old child's exit and the
// respawn.
type respawnGate struct {
	stopped chan struct{} // closed by the run loop once no child runs
	resume  chan struct{} // closed by the re-shard to let it spawn
	once    sync.Once
}

func newRespawnGate() *respawnGate {
	return &respawnGate{stopped: make(chan struct{}), resume: make(chan struct{})}
}

// hold is called by the run loop before a spawn: it reports the stop and
// waits to be let through; false when ctx ended first.
func (g *respawnGate) hold(ctx context.Context) bool {
	g.once.Do(func() { close(g.stopped) })
	select {
	case <-g.resume:
		return true
	case <-ctx.Done():
		return false
	}
}

// gateOf returns the gate of a pending request, if one has any.
func gateOf(pending []*restartReq) *respawnGate {
	for _, r := range pending {
		if r.gate != nil {
			return r.gate
		}
	}
	return nil
}

// heldClusters are this launcher's clusters, stopped for a re-shard's
// switch until resumeClusters starts them on their new shards.
type heldClusters struct {
	ids   []int
	gates []*respawnGate
	errs  []error
	wg    sync.WaitGroup
	timer *time.Timer // resumes by itself when nobody does
}

// holdClusters stops every cluster this launcher runs and holds its
// respawn; it returns once all of them stopped. Unless resumeClusters
// comes first, they start again by themselves after timeout.
func (l *Launcher) holdClusters(ctx context.Context, timeout time.Duration) ([]int, error) {
	l.mu.Lock()
	if l.held != nil {
		l.mu.Unlock()
		return nil, fmt.Errorf("%w: clusters are held for a re-shard already", ErrBusy)
	}
	h := &heldClusters{}
	l.held = h
	l.mu.Unlock()
	for _, p := range l.clusters {
		if owned, _, _ := p.own.get(); !owned {
			continue
		}
		g := newRespawnGate()
		i := len(h.gates)
		h.ids, h.gates, h.errs = append(h.ids, p.id), append(h.gates, g), append(h.errs, nil)
		// Not the caller's context: the restart ends with the respawn,
		// long after the request that held it.
		h.wg.Go(func() { h.errs[i] = p.restartGated(context.Background(), g) })
	}
	h.timer = time.AfterFunc(timeout, func() {
		l.log.Warn("re-shard: nobody resumed the held clusters; starting them again on the current shard map",
			slog.Duration("held_for", timeout))
		if _, err := l.resumeClusters(context.Background()); err != nil {
			l.log.Error("re-shard: resuming the held clusters failed", slog.Any("error", err))
		}
	})
	for _, g := range h.gates {
		select {
		case <-g.stopped:
		case <-ctx.Done():
			return h.ids, ctx.Err()
		}
	}
	return h.ids, nil
}

// resumeClusters starts the held clusters on the shards the shard map
// gives them now, and waits until they are ready.
func (l *Launcher) resumeClusters(ctx context.Context) ([]int, error) {
	l.mu.Lock()
	h := l.held
	l.held = nil
	l.mu.Unlock()
	if h == nil {
		return nil, errors.New("launcher: no clusters are held for a re-shard")
	}
	h.timer.Stop()
	m, err := shardmap.Load(ctx, l.rdb, l.ks)
	if err == nil && m.ShardCount > 0 {
		l.adoptShardMap(m)
	} else {
		l.log.Error("re-shard: cannot read the shard map; the held clusters start on their old shards", slog.Any("error", err))
	}
	for _, g := range h.gates {
		close(g.resume)
	}
	done := make(chan struct{})
	go func() { h.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-ctx.Done():
		return h.ids, ctx.Err()
	}
	var errs []error
	for i, err := range h.errs {
		if err != nil {
			errs = append(errs, fmt.Errorf("cluster %d: %w", h.ids[i], err))
		}
	}
	return h.ids, errors.Join(errs...)
}

// adoptShardMap takes the shard count and every cluster's shards from m
// (clusters m gives no shard keep theirs). Only while no cluster of this
// launcher runs: their respawn reads the shards.
func (l *Launcher) adoptShardMap(m shardmap.Map) {
	l.mu.Lock()
	l.shardCount = m.ShardCount
	l.gateway.Shards = m.ShardCount
	l.mu.Unlock()
	for _, p := range l.clusters {
		if shards := m.ClusterShards(p.id); len(shards) > 0 {
			p.mu.Lock()
			p.shards, p.queued = shards, 0
			p.mu.Unlock()
		}
	}
}

// reshardPeer is a launcher taking part in a re-shard's switch: this one,
// or another one of the bot reached over IPC.
type reshardPeer struct {
	name string
	hold func(context.Context) error
	// resume returns the clusters it started again.
	resume func(context.Context) error
}

// reshardPeers are the launchers whose clusters the switch stops: this
// one, and with several launchers every other live one.
func (l *Launcher) reshardPeers(ctx context.Context, holdTimeout time.Duration) ([]reshardPeer, error) {
	self := reshardPeer{
		name: "this launcher",
		hold: func(ctx context.Context) error {
			_, err := l.holdClusters(ctx, holdTimeout)
			return err
		},
		resume: func(ctx context.Context) error {
			_, err := l.resumeClusters(ctx)
			return err
		},
	}
	peers := []reshardPeer{self}
	if l.coop == nil {
		return peers, nil
	}
	others, err := l.otherLaunchers(ctx)
	if err != nil {
		return nil, err
	}
	// A hold lasts as long as the clusters' stop; a resume until they are
	// ready again, resumed.
	holdFor := l.cfg.ShutdownTimeout + 30*time.Second
	resumeFor := l.cfg.ReadyTimeout + l.cfg.ShutdownTimeout + holdTimeout
	for _, o := range others {
		at := control.At(o.Addr)
		peers = append(peers, reshardPeer{
			name: "launcher " + o.ID,
			hold: func(ctx context.Context) error {
				ctx, cancel := context.WithTimeout(ctx, holdFor)
				defer cancel()
				_, err := control.ReshardHold(ctx, l.node, at)
				return err
			},
			resume: func(ctx context.Context) error {
				ctx, cancel := context.WithTimeout(ctx, resumeFor)
				defer cancel()
				_, err := control.ReshardResume(ctx, l.node, at)
				return err
			},
		})
	}
	return peers, nil
}

// otherLaunchers are the bot's live launchers besides this one.
func (l *Launcher) otherLaunchers(ctx context.Context) ([]leases.Launcher, error) {
	all, err := leases.Launchers(ctx, l.rdb, l.ks)
	if err != nil {
		return nil, fmt.Errorf("launcher: %w", err)
	}
	var out []leases.Launcher
	for _, o := range all {
		if o.ID != l.coop.holder.ID {
			out = append(out, o)
		}
	}
	return out, nil
}

// autoReshard compares Discord's recommended shard count with the bot's
// every interval, and re-shards once it grew by Config.ReshardGrowth
// percent. With several launchers only the one with the smallest id
// checks, so two never start a re-shard at once.
func (l *Launcher) autoReshard(ctx context.Context, interval time.Duration) {
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if l.coop != nil {
			others, err := l.otherLaunchers(ctx)
			if err != nil || slices.ContainsFunc(others, func(o leases.Launcher) bool { return o.ID < l.coop.holder.ID }) {
				continue
			}
		}
		gb, err := identify.FetchGatewayInfo(ctx, http.DefaultClient, l.cfg.RESTURL, l.cfg.Token)
		if err != nil {
			l.log.Warn("re-shard check: cannot ask Discord for the recommended shard count", slog.Any("error", err))
			continue
		}
		want := min(shardCount(gb.Shards, l.cfg.GuildsPerShard, l.cfg.LargeBotSharding, gb.MaxConcurrency), maxShards)
		cur := l.currentShardCount()
		if want*100 < cur*(100+l.cfg.ReshardGrowth) {
			continue
		}
		l.log.Warn("re-shard check: Discord recommends more shards; re-sharding",
			slog.Int("shards", cur), slog.Int("recommended", want), slog.Int("growth_percent", l.cfg.ReshardGrowth))
		if _, err := l.Reshard(ctx, ReshardOptions{Shards: want}); err != nil {
			l.log.Error("automatic re-shard failed", slog.Any("error", err))
		}
	}
}
