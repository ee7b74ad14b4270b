// Package testredis gives tests a Redis: miniredis for unit tests, and the
// real redis-server and Redis Cluster that scripts/test starts for
// integration tests (EachBackend runs a test against both), or a server or
// cluster of a test's own (StartServer, StartCluster).
package testredis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
)

// EnvURL names the variable scripts/test sets to the private redis-server's URL.
const EnvURL = "MEGANE_TEST_REDIS_URL"

// EnvClusterURL names the variable scripts/test sets to the URL of the
// private Redis Cluster (three masters) it starts beside the server:
// redis+cluster://127.0.0.1:port?addr=127.0.0.1:port2&addr=127.0.0.1:port3.
const EnvClusterURL = "MEGANE_TEST_REDIS_CLUSTER_URL"

// Mini starts a miniredis for the test and returns a client to it.
func Mini(t testing.TB) (*miniredis.Miniredis, redis.UniversalClient) {
	t.Helper()
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	return m, c
}

// URL returns the URL of the Redis the test runs against: inside a
// subtest of EachBackend, that backend's; otherwise the real redis-server's.
// It skips the test loudly when the suite was not started by scripts/test.
func URL(t testing.TB) string {
	t.Helper()
	if u, ok := backendOf(t); ok {
		return u
	}
	u := os.Getenv(EnvURL)
	if u == "" {
		t.Skipf("SKIPPED: integration test needs a real redis-server; run scripts/test (or set %s=redis://127.0.0.1:6379)", EnvURL)
	}
	return u
}

// Real returns a client to the Redis of URL (skipping as URL does) and a
// fresh namespace whose keys are deleted when the test ends. On a Redis
// Cluster URL the client is a cluster client, and a CROSSSLOT reply to it
// fails the test.
func Real(t testing.TB) (redis.UniversalClient, keyspace.Keyspace) {
	t.Helper()
	u := URL(t)
	c, err := NewClient(u)
	if err != nil {
		t.Fatalf("testredis: %v", err)
	}
	watchCrossSlot(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("testredis: ping %s: %v", u, err)
	}
	ks := keyspace.MustNew(Namespace(t))
	t.Cleanup(func() {
		Purge(context.Background(), c, ks)
		_ = c.Close()
	})
	return c, ks
}

// NewClient returns a client of a redis:// URL, or a cluster client of a
// redis+cluster://host:port?addr=host2:port2 URL (what redisconn accepts,
// without TLS; testredis cannot import redisconn, whose tests use it).
func NewClient(u string) (redis.UniversalClient, error) {
	if rest, ok := strings.CutPrefix(u, "redis+cluster://"); ok {
		o, err := redis.ParseClusterURL("redis://" + rest)
		if err != nil {
			return nil, err
		}
		return redis.NewClusterClient(o), nil
	}
	o, err := redis.ParseURL(u)
	if err != nil {
		return nil, err
	}
	return redis.NewClient(o), nil
}

// Namespace returns a namespace unique to this test run.
func Namespace(t testing.TB) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("t%s", hex.EncodeToString(b[:]))
}

// Purge deletes every key of the namespace; on a Redis Cluster it scans
// every master.
func Purge(ctx context.Context, c redis.UniversalClient, ks keyspace.Keyspace) {
	if cc, ok := c.(*redis.ClusterClient); ok {
		_ = cc.ForEachMaster(ctx, func(ctx context.Context, m *redis.Client) error {
			purge(ctx, m, ks)
			return nil
		})
		return
	}
	purge(ctx, c, ks)
}

// purge deletes the namespace's keys on one server, one key per DEL, so it
// holds on a cluster node too (no CROSSSLOT).
func purge(ctx context.Context, c redis.Cmdable, ks keyspace.Keyspace) {
	iter := c.Scan(ctx, 0, ks.Base()+"*", 1000).Iterator()
	var batch []string
	flush := func() {
		pipe := c.Pipeline()
		for _, k := range batch {
			pipe.Del(ctx, k)
		}
		_, _ = pipe.Exec(ctx)
		batch = batch[:0]
	}
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			flush()
		}
	}
	if len(batch) > 0 {
		flush()
	}
}
