package leases

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
)

// Hash field names of keyspace.LauncherRecord.
const (
	LauncherFieldHost      = "host"
	LauncherFieldPID       = "pid"
	LauncherFieldCapacity  = "capacity"
	LauncherFieldOwned     = "owned"
	LauncherFieldStartedAt = "started_at"
	LauncherFieldAddr      = "addr"
)

// Launcher is one cooperating launcher's record.
type Launcher struct {
	// ID is the launcher's id.
	ID string
	// Host and PID say where it runs.
	Host string
	PID  int
	// Capacity is how many clusters it runs at most (MEGANE_CLUSTERS).
	Capacity int
	// Owned are the clusters it owns, in order.
	Owned []int
	// StartedAt is when it started.
	StartedAt time.Time
	// Addr is its IPC address, where its control ops are served.
	Addr string
}

// Register writes l's record for ttl and indexes it. Launchers call it
// with every lease renewal; expired records are dropped from the index.
func Register(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace, l Launcher, ttl time.Duration) error {
	owned := make([]string, len(l.Owned))
	for i, c := range l.Owned {
		owned[i] = strconv.Itoa(c)
	}
	now := time.Now()
	key := ks.LauncherRecord(l.ID)
	pipe := rdb.Pipeline()
	pipe.HSet(ctx, key, LauncherFieldHost, l.Host, LauncherFieldPID, l.PID, LauncherFieldCapacity, l.Capacity,
		LauncherFieldOwned, strings.Join(owned, ","), LauncherFieldStartedAt, l.StartedAt.UnixMilli(), LauncherFieldAddr, l.Addr)
	pipe.PExpire(ctx, key, ttl)
	pipe.ZAdd(ctx, ks.Launchers(), redis.Z{Score: float64(now.Add(ttl).UnixMilli()), Member: l.ID})
	pipe.ZRemRangeByScore(ctx, ks.Launchers(), "-inf", "("+strconv.FormatInt(now.UnixMilli(), 10))
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("leases: register launcher %s: %w", l.ID, err)
	}
	return nil
}

// Deregister removes launcher id's record, when it stops.
func Deregister(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace, id string) error {
	pipe := rdb.Pipeline()
	pipe.Del(ctx, ks.LauncherRecord(id))
	pipe.ZRem(ctx, ks.Launchers(), id)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("leases: deregister launcher %s: %w", id, err)
	}
	return nil
}

// Launchers returns the live launchers' records, ordered by id.
func Launchers(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace) ([]Launcher, error) {
	ids, err := rdb.ZRangeByScore(ctx, ks.Launchers(), &redis.ZRangeBy{
		Min: strconv.FormatInt(time.Now().UnixMilli(), 10), Max: "+inf"}).Result()
	if err != nil {
		return nil, fmt.Errorf("leases: list launchers: %w", err)
	}
	slices.Sort(ids)
	pipe := rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(ids))
	for i, id := range ids {
		cmds[i] = pipe.HGetAll(ctx, ks.LauncherRecord(id))
	}
	if len(ids) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("leases: read launchers: %w", err)
		}
	}
	out := make([]Launcher, 0, len(ids))
	for i, id := range ids {
		m := cmds[i].Val()
		if len(m) == 0 {
			continue // expired between the two reads
		}
		l := Launcher{ID: id, Host: m[LauncherFieldHost], Addr: m[LauncherFieldAddr]}
		l.PID, _ = strconv.Atoi(m[LauncherFieldPID])
		l.Capacity, _ = strconv.Atoi(m[LauncherFieldCapacity])
		if ms, err := strconv.ParseInt(m[LauncherFieldStartedAt], 10, 64); err == nil {
			l.StartedAt = time.UnixMilli(ms)
		}
		for _, f := range strings.Split(m[LauncherFieldOwned], ",") {
			if c, err := strconv.Atoi(f); err == nil {
				l.Owned = append(l.Owned, c)
			}
		}
		out = append(out, l)
	}
	return out, nil
}

// planLockTTL bounds how long a launcher that died holding the plan lock
// keeps the others waiting.
const planLockTTL = 10 * time.Second

// unlockScript deletes the plan lock if the caller still holds it.
//
//	KEYS[1] -> plan lock
//	ARGV[1] -> holder
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// LockPlan takes the plan lock for holder, waiting up to wait for another
// launcher to finish with it (ErrLocked then). The returned func releases
// it.
func LockPlan(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace, holder string, wait time.Duration) (func(), error) {
	deadline := time.Now().Add(wait)
	for {
		ok, err := rdb.SetNX(ctx, ks.PlanLock(), holder, planLockTTL).Result()
		if err != nil {
			return nil, fmt.Errorf("leases: take plan lock: %w", err)
		}
		if ok {
			return func() {
				ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
				defer cancel()
				_ = unlockScript.Run(ctx, rdb, []string{ks.PlanLock()}, holder).Err()
			}, nil
		}
		if time.Now().After(deadline) {
			other, _ := rdb.Get(ctx, ks.PlanLock()).Result()
			return nil, fmt.Errorf("%w (%s) after %s", ErrLocked, other, wait)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
