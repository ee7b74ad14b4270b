package testredis

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Backend names, the subtests of EachBackend.
const (
	// BackendRedis is the single redis-server of EnvURL.
	BackendRedis = "redis"
	// BackendCluster is the Redis Cluster of EnvClusterURL.
	BackendCluster = "cluster"
)

// backends maps the name of a running EachBackend subtest to its URL.
var backends sync.Map

// EachBackend runs test twice, as the subtests "redis" (the single
// redis-server of EnvURL) and "cluster" (the three-master Redis Cluster of
// EnvClusterURL). Inside them, and inside their own subtests, URL and Real
// return that backend, so a test's helpers and the child processes it
// starts with URL's REDIS_URL follow without being told. A subtest whose
// variable is unset is skipped loudly.
//
// The cluster subtest fails when the cluster's nodes sent a CROSSSLOT reply
// while it ran (INFO errorstats), to anyone: Megane's child processes log
// and retry Redis errors, so the nodes are where such a bug shows. Test
// packages share the cluster of scripts/test, so a CROSSSLOT can be blamed
// on a test that ran beside the guilty one; either way it is a bug.
func EachBackend(t *testing.T, test func(t *testing.T)) {
	t.Helper()
	for _, b := range []struct{ name, env, hint string }{
		{BackendRedis, EnvURL, "redis://127.0.0.1:6379"},
		{BackendCluster, EnvClusterURL, "redis+cluster://127.0.0.1:7000?addr=127.0.0.1:7001&addr=127.0.0.1:7002"},
	} {
		t.Run(b.name, func(t *testing.T) {
			u := os.Getenv(b.env)
			if u == "" {
				t.Skipf("SKIPPED: integration test needs a real %s; run scripts/test (or set %s=%s)", b.name, b.env, b.hint)
			}
			backends.Store(t.Name(), u)
			t.Cleanup(func() { backends.Delete(t.Name()) })
			if b.name == BackendCluster {
				checkNoCrossSlot(t, u)
			}
			test(t)
		})
	}
}

// backendOf returns the URL of the EachBackend subtest t is in, if any.
func backendOf(t testing.TB) (string, bool) {
	name := t.Name()
	for {
		if u, ok := backends.Load(name); ok {
			return u.(string), true
		}
		i := strings.LastIndexByte(name, '/')
		if i < 0 {
			return "", false
		}
		name = name[:i]
	}
}

// OnCluster reports whether the test runs against a Redis Cluster (inside
// EachBackend's "cluster" subtest).
func OnCluster(t testing.TB) bool {
	u, ok := backendOf(t)
	return ok && strings.HasPrefix(u, "redis+cluster://")
}

// checkNoCrossSlot fails t, when it ends, if the cluster's nodes sent
// CROSSSLOT replies meanwhile.
func checkNoCrossSlot(t *testing.T, clusterURL string) {
	t.Helper()
	addrs, err := clusterAddrs(clusterURL)
	if err != nil {
		t.Fatalf("testredis: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	before, err := CrossSlotErrors(ctx, addrs)
	if err != nil {
		t.Fatalf("testredis: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		after, err := CrossSlotErrors(ctx, addrs)
		if err != nil {
			t.Errorf("testredis: %v", err)
			return
		}
		if after > before {
			t.Errorf("the Redis Cluster sent %d CROSSSLOT replies while this test ran: a command or script spans "+
				"keys of several slots (a CROSSSLOT anywhere is a bug)", after-before)
		}
	})
}

// clusterAddrs returns the node addresses a redis+cluster:// URL names.
func clusterAddrs(u string) ([]string, error) {
	rest, ok := strings.CutPrefix(u, "redis+cluster://")
	if !ok {
		return nil, fmt.Errorf("not a redis+cluster:// URL: %s", u)
	}
	o, err := redis.ParseClusterURL("redis://" + rest)
	if err != nil {
		return nil, err
	}
	return o.Addrs, nil
}

// CrossSlotErrors adds up the CROSSSLOT replies the servers at addrs have
// sent since they started (errorstat_CROSSSLOT of INFO errorstats).
func CrossSlotErrors(ctx context.Context, addrs []string) (int64, error) {
	var total int64
	for _, a := range addrs {
		c := redis.NewClient(&redis.Options{Addr: a})
		n, err := crossSlotErrors(ctx, c)
		_ = c.Close()
		if err != nil {
			return 0, fmt.Errorf("INFO errorstats of %s: %w", a, err)
		}
		total += n
	}
	return total, nil
}

func crossSlotErrors(ctx context.Context, c *redis.Client) (int64, error) {
	s, err := c.Info(ctx, "errorstats").Result()
	if err != nil {
		return 0, err
	}
	return errorCount(s, "CROSSSLOT"), nil
}

// errorCount reads "errorstat_<prefix>:count=N" from INFO errorstats.
func errorCount(info, prefix string) int64 {
	v, ok := infoFields(info)["errorstat_"+prefix]
	if !ok {
		return 0
	}
	n, _ := strconv.ParseInt(strings.TrimPrefix(v, "count="), 10, 64)
	return n
}

// crossSlotHook fails its test, when it ends, if Redis answered a command
// with CROSSSLOT.
type crossSlotHook struct {
	mu   sync.Mutex
	seen []string
}

// watchCrossSlot makes a CROSSSLOT reply to rdb fail t when it ends.
func watchCrossSlot(t testing.TB, rdb redis.UniversalClient) {
	h := &crossSlotHook{}
	rdb.AddHook(h)
	t.Cleanup(func() {
		h.mu.Lock()
		defer h.mu.Unlock()
		for _, s := range h.seen {
			t.Errorf("Redis answered CROSSSLOT: %s", s)
		}
	})
}

func (h *crossSlotHook) check(cmds ...redis.Cmder) {
	for _, c := range cmds {
		if err := c.Err(); err != nil && strings.HasPrefix(err.Error(), "CROSSSLOT") {
			h.mu.Lock()
			h.seen = append(h.seen, fmt.Sprintf("%v: %v", c.Args(), err))
			h.mu.Unlock()
		}
	}
}

func (h *crossSlotHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *crossSlotHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		h.check(cmd)
		return err
	}
}

func (h *crossSlotHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		h.check(cmds...)
		return err
	}
}
