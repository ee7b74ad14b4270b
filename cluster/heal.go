package cluster

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/disgoorg/disgo/gateway"
	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/clusterhash"
	"github.com/megane-go/megane/identify"
	"github.com/megane-go/megane/shardmap"
	"github.com/megane-go/megane/shardstatus"
)

// budgetRefusedLogEvery bounds how often a refused re-sync is logged.
const budgetRefusedLogEvery = time.Minute

// healer keeps the cluster's records in Redis: every HeartbeatInterval it
// checks, in one pipeline, that they exist, and rewrites only what is
// missing. Redis may lose every key at once (FLUSHDB, a restart without
// persistence); the gateways keep running on their sockets meanwhile, so
// the cluster knows everything those keys said:
//
//   - its hash (keyspace.Cluster) and its part of the shard map;
//   - each shard's session and status hash (the writer rewrites them);
//   - the cache projection of each shard, marked by keyspace.ShardProjected:
//     a shard whose mark is gone has lost its projection, and is
//     re-identified (through the identify limiter, after checking the
//     session start budget) so that Discord sends every GUILD_CREATE again.
//
// A failed check is retried at the next interval: nothing here ever stops
// the cluster.
type healer struct {
	r *runner
	// marked holds the shards whose projection mark this process set.
	marked map[int]bool
	// refusedAt is when a re-sync was last refused for the session budget.
	refusedAt time.Time
	// lostAt is when the projection of a shard was found lost.
	lostAt map[int]time.Time
}

// heal is the healer's loop.
func (r *runner) heal(ctx context.Context) {
	defer r.recoverCallback("healer")
	h := &healer{r: r, marked: map[int]bool{}, lostAt: map[int]time.Time{}}
	tick := time.NewTicker(r.o.HeartbeatInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		cctx, cancel := context.WithTimeout(ctx, r.o.HeartbeatInterval)
		h.round(cctx)
		cancel()
	}
}

// round is one check and repair.
func (h *healer) round(ctx context.Context) {
	r := h.r
	snap := r.track.health()
	pipe := r.rdb.Pipeline()
	clusterHash := clusterhash.HasProcess(ctx, pipe, r.ks, r.o.ID)
	mapped := make(map[int]*redis.BoolCmd, len(r.ids))
	status := map[int]*redis.BoolCmd{}
	session := map[int]*redis.IntCmd{}
	projected := map[int]*redis.IntCmd{}
	for _, id := range r.ids {
		mapped[id] = shardmap.Has(ctx, pipe, r.ks, id)
		if snap[id].statusSaved {
			status[id] = shardstatus.HasState(ctx, pipe, r.ks, id)
		}
		if snap[id].saved {
			session[id] = pipe.Exists(ctx, r.ks.ShardSession(id))
		}
		if h.marked[id] {
			projected[id] = pipe.Exists(ctx, r.ks.ShardProjected(id))
		}
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return
	}

	var rewrote []string
	if !clusterHash.Val() {
		if err := r.rewriteClusterHash(ctx); err == nil {
			rewrote = append(rewrote, "cluster hash")
		}
	}
	var unmapped, resave, restatus, lost []int
	for _, id := range r.ids {
		if !mapped[id].Val() {
			unmapped = append(unmapped, id)
		}
		if c := status[id]; c != nil && !c.Val() {
			restatus = append(restatus, id)
		}
		if c := session[id]; c != nil && c.Val() == 0 {
			resave = append(resave, id)
		}
		if c := projected[id]; c != nil && c.Val() == 0 {
			lost = append(lost, id)
		}
	}
	if len(unmapped) > 0 {
		own := shardmap.Map{ShardCount: r.track.shardCount, Owners: make(map[int]int, len(unmapped))}
		for _, id := range unmapped {
			own.Owners[id] = r.o.ID
		}
		if err := shardmap.Add(ctx, r.rdb, r.ks, own).Err(); err == nil {
			rewrote = append(rewrote, "shard map")
		}
	}
	if len(resave) > 0 || len(restatus) > 0 {
		r.track.resave(resave, restatus)
		if len(resave) > 0 {
			rewrote = append(rewrote, "sessions of shards "+joinInts(resave))
		}
		if len(restatus) > 0 {
			rewrote = append(rewrote, "statuses of shards "+joinInts(restatus))
		}
	}
	if len(rewrote) > 0 {
		r.log.Warn("cluster: Redis had lost records of the cluster: rewritten", slog.String("records", strings.Join(rewrote, ", ")))
	}
	if len(lost) > 0 && r.sh.proj != nil {
		h.resync(ctx, lost)
	}

	// Mark the projection of every connected shard not marked yet.
	if r.sh.proj == nil {
		return
	}
	now := time.Now().UnixMilli()
	for _, id := range r.ids {
		if h.marked[id] || !snap[id].connected {
			continue
		}
		if err := r.rdb.SetNX(ctx, r.ks.ShardProjected(id), now, 0).Err(); err != nil {
			return
		}
		h.marked[id] = true
	}
}

// resync rebuilds the lost projection of shards by re-identifying them,
// when the session start budget allows. Whatever emptied Redis also took
// the identify limiter's buckets, which kept each bucket's last IDENTIFY
// from the next for the identify window: a shard waits one window (the
// limiter's hold) after its loss was found before it identifies again.
func (h *healer) resync(ctx context.Context, lost []int) {
	r := h.r
	now := time.Now()
	var shards []int
	for _, id := range lost {
		at, ok := h.lostAt[id]
		if !ok {
			h.lostAt[id], at = now, now
		}
		if now.Sub(at) >= r.identifyHold() {
			shards = append(shards, id)
		}
	}
	if len(shards) == 0 {
		return
	}
	err := identify.CheckBudget(ctx, r.rdb, r.o.IdentifyKeys, len(shards), r.o.IdentifyReserve)
	if errors.Is(err, identify.ErrSessionStartLimit) {
		if time.Since(h.refusedAt) >= budgetRefusedLogEvery {
			h.refusedAt = time.Now()
			r.log.Error("cluster: the cache projection of shards "+joinInts(shards)+" was lost from Redis and "+
				"cannot be rebuilt now: re-identifying them would exceed the session start budget; "+
				"retrying every interval (restart the cluster once the budget resets to rebuild it)",
				slog.Any("error", err))
		}
		return
	}
	if err != nil {
		return // Redis trouble: the next round retries
	}
	for _, id := range shards {
		r.log.Warn("cluster: the cache projection of the shard was lost from Redis (flushed, or restarted empty): "+
			"re-identifying the shard so Discord sends its guilds again", slog.Int("shard_id", id))
		if !r.reidentify(id) {
			return
		}
		delete(h.marked, id)
		delete(h.lostAt, id)
	}
}

// reopener re-identifies shards while the cluster runs. stop shuts it
// before closing the shards, so no shard is opened behind its back.
type reopener struct {
	mu      sync.Mutex
	stopped bool
	ctx     context.Context
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	// closing holds gateways this cluster closed to re-identify them: their
	// close handler call is not a shard giving up.
	closing map[gateway.Gateway]bool
}

func newReopener() *reopener {
	ctx, cancel := context.WithCancel(context.Background())
	return &reopener{ctx: ctx, cancel: cancel, closing: map[gateway.Gateway]bool{}}
}

// expected reports (once) whether g was closed by reidentify.
func (o *reopener) expected(g gateway.Gateway) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.closing[g] {
		delete(o.closing, g)
		return true
	}
	return false
}

// shutdown stops re-identifying and waits for opens in flight.
func (o *reopener) shutdown() {
	o.mu.Lock()
	o.stopped = true
	o.cancel()
	o.mu.Unlock()
	o.wg.Wait()
}

// reidentify closes shard id (with 1000: its session ends, which is the
// point) and opens it again without a session, so it IDENTIFYs through the
// limiter and gets READY and every GUILD_CREATE anew. It reports false
// when the cluster is stopping.
func (r *runner) reidentify(id int) bool {
	o := r.reopen
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.stopped {
		return false
	}
	if g := r.sm.Shard(id); g != nil {
		o.closing[g] = true
		cctx, cancel := context.WithTimeout(o.ctx, 5*time.Second)
		r.sm.CloseShard(cctx, id)
		cancel()
	}
	r.track.disconnected(id, false)
	o.wg.Go(func() {
		defer r.recoverCallback("re-identify shard")
		if err := r.sm.OpenShard(o.ctx, id); err != nil && o.ctx.Err() == nil {
			r.fail(errors.Join(ErrShardFailed, err))
		}
	})
	return true
}

// identifyHold is how long an IDENTIFY keeps its bucket from the next.
func (r *runner) identifyHold() time.Duration {
	if r.limiter != nil {
		return r.limiter.Hold()
	}
	if r.o.IdentifyWindow > 0 {
		return r.o.IdentifyWindow
	}
	return identify.DefaultWindow
}

// rewriteClusterHash writes the cluster's own fields of keyspace.Cluster
// again, as register and onReady wrote them.
func (r *runner) rewriteClusterHash(ctx context.Context) error {
	host, _ := os.Hostname()
	var readyAt time.Time
	if at := r.readyAt.Load(); at > 0 {
		readyAt = time.UnixMilli(at)
	}
	return clusterhash.Rewrite(ctx, r.rdb, r.ks, r.o.ID, clusterhash.Process{
		PID: os.Getpid(), Host: host, Shards: r.ids, ShardCount: r.track.shardCount, StartedAt: r.startedAt,
	}, readyAt).Err()
}

func joinInts(ids []int) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.Itoa(id)
	}
	return strings.Join(s, ",")
}
