package launcher

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/megane-go/megane/clusterhash"
	"github.com/megane-go/megane/leases"
	"github.com/megane-go/megane/lifecycle"
	"github.com/megane-go/megane/redisipc"
)

// ErrPlanConflict is returned by a launcher whose settings contradict the
// plan of the bot that other launchers already run (shard count, cluster
// count, one launcher against several).
var ErrPlanConflict = errors.New("launcher: settings contradict the running bot's plan")

// ErrNotOwned is returned for a cluster or service copy that another
// launcher runs (several launchers per bot).
var ErrNotOwned = errors.New("launcher: owned by another launcher")

// ExitLeaseLost is the exit status of a cluster or service process that
// stopped because it could not confirm its lease (several launchers per
// bot). The launcher does not count it as a crash.
const ExitLeaseLost = 76

// coop is a launcher's part in a bot that several launchers run: its id,
// the leases of what it owns and its record.
type coop struct {
	l        *Launcher
	holder   leases.Holder
	addr     string
	ttl      time.Duration
	capacity int

	mu        sync.Mutex
	renewedAt map[*proc]time.Time // last confirmed renewal of each owned lease
}

func newLauncherID() string {
	host, _ := os.Hostname()
	host = strings.Map(func(r rune) rune {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '.' {
			return r
		}
		return '-'
	}, host)
	if len(host) > 40 {
		host = host[:40]
	}
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return fmt.Sprintf("%s-%d-%s", host, os.Getpid(), hex.EncodeToString(b))
}

func newCoop(l *Launcher) *coop {
	host, _ := os.Hostname()
	id := newLauncherID()
	return &coop{
		l: l, holder: leases.Holder{ID: id, Host: host, PID: os.Getpid()},
		addr: redisipc.KindLauncher + ":" + id, ttl: l.cfg.LeaseTTL,
		capacity: l.cfg.Clusters, renewedAt: map[*proc]time.Time{},
	}
}

// record is this launcher's record among the bot's launchers.
func (c *coop) record() leases.Launcher {
	var owned []int
	for _, p := range c.l.clusters {
		if ok, _, _ := p.own.get(); ok {
			owned = append(owned, p.id)
		}
	}
	return leases.Launcher{ID: c.holder.ID, Host: c.holder.Host, PID: c.holder.PID, Capacity: c.getCapacity(),
		Owned: owned, StartedAt: c.l.startedAt, Addr: c.addr}
}

// settlePlan checks this launcher's plan against the bot's, under the plan
// lock: with other launchers running, their shard and cluster counts stand,
// and a launcher that contradicts them refuses to start; without, this
// launcher's plan is written as a single launcher's is. It registers the
// launcher before releasing the lock, so the next one sees it.
func (c *coop) settlePlan(ctx context.Context) error {
	l := c.l
	unlock, err := leases.LockPlan(ctx, l.rdb, l.ks, c.holder.ID, 15*time.Second)
	if err != nil {
		return fmt.Errorf("launcher: %w", err)
	}
	defer unlock()
	others, err := leases.Launchers(ctx, l.rdb, l.ks)
	if err != nil {
		return fmt.Errorf("launcher: %w", err)
	}
	if len(others) > 0 {
		stored, err := l.loadShardMap(ctx)
		if err != nil {
			return err
		}
		names := launcherNames(others)
		if stored.ShardCount > 0 {
			if l.cfg.Shards > 0 && l.cfg.Shards != stored.ShardCount {
				return fmt.Errorf("%w: %s=%d, but the launchers running it (%s) have %d shards",
					ErrPlanConflict, envShards, l.cfg.Shards, names, stored.ShardCount)
			}
			if stored.Clusters != l.cfg.TotalClusters {
				return fmt.Errorf("%w: %s=%d, but the launchers running it (%s) have %d clusters",
					ErrPlanConflict, envTotalClusters, l.cfg.TotalClusters, names, stored.Clusters)
			}
			if stored.ShardCount != l.shardCount {
				l.log.Info("joining the running bot's plan", slog.Int("shards", stored.ShardCount),
					slog.Int("recommended_here", l.shardCount))
				l.shardCount = stored.ShardCount
				l.gateway.Shards = stored.ShardCount
			}
		}
	}
	if l.cfg.TotalClusters > l.shardCount {
		return fmt.Errorf("%w: %s=%d clusters for %d shards: a cluster needs at least one shard",
			ErrInvalidConfig, envTotalClusters, l.cfg.TotalClusters, l.shardCount)
	}
	if err := l.saveGateway(ctx); err != nil {
		return err
	}
	if err := l.writeShardMap(ctx); err != nil {
		return err
	}
	if err := leases.Register(ctx, l.rdb, l.ks, c.record(), c.recordTTL()); err != nil {
		return fmt.Errorf("launcher: %w", err)
	}
	return nil
}

func launcherNames(ls []leases.Launcher) string {
	names := make([]string, len(ls))
	for i, o := range ls {
		names[i] = o.ID
	}
	return strings.Join(names, ", ")
}

// recordTTL is the lifetime of the launcher's record: longer than a lease,
// so a late renewal never hides a live launcher from megane-cli.
func (c *coop) recordTTL() time.Duration { return 3 * c.ttl }

// interval is how often leases are renewed and free ones claimed.
func (c *coop) interval() time.Duration { return c.ttl / 3 }

// run renews this launcher's leases and claims free ones until ctx ends.
func (c *coop) run(ctx context.Context) {
	c.tick(ctx)
	t := time.NewTicker(c.interval())
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.tick(ctx)
		}
	}
}

func (c *coop) tick(ctx context.Context) {
	rctx, cancel := context.WithTimeout(ctx, c.interval())
	defer cancel()
	c.renew(rctx)
	c.claim(rctx)
	if err := leases.Register(rctx, c.l.rdb, c.l.ks, c.record(), c.recordTTL()); err != nil && ctx.Err() == nil {
		c.l.log.Warn("could not renew the launcher's record", slog.Any("error", err))
	}
}

// renew extends every owned lease. A lease another launcher took, or one
// not confirmed for longer than its process trusts it, is lost: its
// process is stopped (it stops its shards by itself, too).
func (c *coop) renew(ctx context.Context) {
	for _, p := range c.l.all() {
		owned, token, _ := p.own.get()
		if !owned {
			continue
		}
		err := leases.Renew(ctx, c.l.rdb, c.l.ks, p.leaseName(), c.holder.ID, token, c.ttl)
		now := time.Now()
		c.mu.Lock()
		if err == nil {
			c.renewedAt[p] = now
		}
		last := c.renewedAt[p]
		c.mu.Unlock()
		switch {
		case err == nil:
		case errors.Is(err, leases.ErrLost):
			c.lose(p, "the lease expired or another launcher took it")
		case now.Sub(last) > c.ttl-c.margin():
			c.lose(p, "the lease could not be renewed in time: "+err.Error())
		default:
			if ctx.Err() == nil {
				c.l.log.Warn("lease renewal failed; retrying", append(p.logAttrs(), slog.Any("error", err))...)
			}
		}
	}
}

// margin is how long before its lease expires a process stops trusting it.
func (c *coop) margin() time.Duration { return c.ttl / 4 }

func (c *coop) lose(p *proc, why string) {
	p.own.set(false, 0)
	c.mu.Lock()
	delete(c.renewedAt, p)
	c.mu.Unlock()
	c.l.log.Error("lost the lease of "+p.name()+": stopping it here", append(p.logAttrs(), slog.String("reason", why))...)
	if p.kind == kindCluster {
		c.l.sink.event(lifecycle.ClusterEvent(lifecycle.ClusterLeaseLost, p.id, c.holder.ID+": "+why))
	}
}

// claim takes free leases: clusters in order up to the capacity, every
// service copy. Clusters left free are announced as unowned, once.
func (c *coop) claim(ctx context.Context) {
	l := c.l
	owned := 0
	for _, p := range l.clusters {
		if ok, _, _ := p.own.get(); ok {
			owned++
		}
	}
	for _, p := range l.all() {
		if ok, _, _ := p.own.get(); ok {
			continue
		}
		capacity := c.getCapacity()
		if capacity == 0 {
			continue // draining: take nothing
		}
		if p.kind == kindCluster && owned >= capacity {
			c.noteUnowned(ctx, p)
			continue
		}
		token, err := leases.Claim(ctx, l.rdb, l.ks, p.leaseName(), c.holder, c.ttl)
		if err != nil {
			if !errors.Is(err, leases.ErrHeld) && ctx.Err() == nil {
				l.log.Warn("could not claim "+p.name(), append(p.logAttrs(), slog.Any("error", err))...)
			}
			continue
		}
		c.mu.Lock()
		c.renewedAt[p] = time.Now()
		c.mu.Unlock()
		p.own.set(true, token)
		l.log.Info("claimed "+p.name(), append(p.logAttrs(), slog.Uint64("token", token))...)
		if p.kind == kindCluster {
			owned++
			l.sink.event(lifecycle.ClusterEvent(lifecycle.ClusterClaimed, p.id,
				c.holder.ID+" token "+strconv.FormatUint(token, 10)))
		}
	}
}

func (c *coop) noteUnowned(ctx context.Context, p *proc) {
	first, since, err := leases.NoteUnowned(ctx, c.l.rdb, c.l.ks, p.leaseName())
	if err != nil || since.IsZero() {
		return
	}
	if first {
		c.l.log.Error(p.name()+" has no launcher: every launcher is at capacity; its shards are offline",
			append(p.logAttrs(), slog.Int("capacity", c.getCapacity()))...)
		c.l.sink.event(lifecycle.ClusterEvent(lifecycle.ClusterUnowned, p.id,
			"no launcher has capacity for it; start another launcher or raise "+envClusters))
	}
}

// releaseAll frees the leases of this launcher once its children exited,
// so other launchers take them over at once, and removes its record.
func (c *coop) releaseAll() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for _, p := range c.l.all() {
		if ok, token, _ := p.own.get(); ok {
			if err := leases.Release(ctx, c.l.rdb, c.l.ks, p.leaseName(), c.holder.ID, token); err != nil {
				c.l.log.Warn("could not release the lease of "+p.name(), slog.Any("error", err))
			}
		}
	}
	if err := leases.Deregister(ctx, c.l.rdb, c.l.ks, c.holder.ID); err != nil {
		c.l.log.Warn("could not remove the launcher's record", slog.Any("error", err))
	}
}

// ErrNotCooperating is returned by Drain with one launcher per bot: there
// is nobody to hand the clusters to.
var ErrNotCooperating = errors.New("launcher: one launcher runs this bot (no MEGANE_TOTAL_CLUSTERS); nobody to hand clusters to")

// Drain hands this launcher's clusters to the other launchers of the bot,
// one at a time, and then stops it: the way to replace a launcher (a new
// build, a host going down) without stopping the bot. Each cluster is
// stopped (its sessions saved), its lease released, and the next one waits
// until another launcher runs the first ready, its shards resumed; service
// copies are handed over last. It fails, keeping the rest of its clusters,
// when no other launcher takes one within timeout.
func (l *Launcher) Drain(ctx context.Context, timeout time.Duration) error {
	if err := l.checkRunning(); err != nil {
		return err
	}
	if l.coop == nil {
		return ErrNotCooperating
	}
	c := l.coop
	c.setCapacity(0)
	for _, p := range l.all() {
		if owned, _, _ := p.own.get(); !owned {
			continue
		}
		if err := c.handOver(ctx, p, timeout); err != nil {
			c.setCapacity(l.cfg.Clusters)
			return err
		}
	}
	l.log.Info("drained: every cluster runs on another launcher; stopping")
	return l.Shutdown()
}

func (c *coop) setCapacity(n int) {
	c.mu.Lock()
	c.capacity = n
	c.mu.Unlock()
}

func (c *coop) getCapacity() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.capacity
}

// handOver stops p here, releases its lease and waits until another
// launcher holds it and, for a cluster, runs it ready.
func (c *coop) handOver(ctx context.Context, p *proc, timeout time.Duration) error {
	l := c.l
	_, token, _ := p.own.get()
	l.log.Info("handing "+p.name()+" over to another launcher", p.logAttrs()...)
	p.own.set(false, 0) // the supervisor stops the child, which saves its sessions
	deadline := time.Now().Add(timeout)
	for p.currentState() != StateNotOwned || p.status().PID != 0 {
		if err := sleepUntil(ctx, deadline, p.name()+" to stop"); err != nil {
			return err
		}
	}
	if err := leases.Release(ctx, l.rdb, l.ks, p.leaseName(), c.holder.ID, token); err != nil {
		return fmt.Errorf("launcher: hand %s over: %w", p.name(), err)
	}
	for {
		ls, err := leases.Read(ctx, l.rdb, l.ks, []string{p.leaseName()})
		if err == nil && ls[0].Held() && ls[0].Owner != c.holder.ID && (p.kind != kindCluster || c.runsReady(ctx, p.id)) {
			l.log.Info(p.name()+" runs on launcher "+ls[0].Owner, p.logAttrs()...)
			return nil
		}
		if err := sleepUntil(ctx, deadline, "another launcher to run "+p.name()); err != nil {
			// Take it back rather than leave it unowned.
			if t, cerr := leases.Claim(context.WithoutCancel(ctx), l.rdb, l.ks, p.leaseName(), c.holder, c.ttl); cerr == nil {
				p.own.set(true, t)
			}
			return err
		}
	}
}

// runsReady reports whether cluster id's process records itself ready.
func (c *coop) runsReady(ctx context.Context, id int) bool {
	st, err := c.l.rdb.HGet(ctx, c.l.ks.Cluster(id), clusterhash.FieldStatus).Result()
	return err == nil && st == clusterhash.StatusReady
}

func sleepUntil(ctx context.Context, deadline time.Time, what string) error {
	if time.Now().After(deadline) {
		return fmt.Errorf("launcher: drain: timed out waiting for %s", what)
	}
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(50 * time.Millisecond):
		return nil
	}
}
