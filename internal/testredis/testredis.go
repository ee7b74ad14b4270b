// Package testredis gives tests a Redis: miniredis for unit tests, and the
// real redis-server that scripts/test starts for integration tests.
package testredis

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
)

// EnvURL names the variable scripts/test sets to the private redis-server's URL.
const EnvURL = "MEGANE_TEST_REDIS_URL"

// Mini starts a miniredis for the test and returns a client to it.
func Mini(t testing.TB) (*miniredis.Miniredis, redis.UniversalClient) {
	t.Helper()
	m := miniredis.RunT(t)
	c := redis.NewClient(&redis.Options{Addr: m.Addr()})
	t.Cleanup(func() { _ = c.Close() })
	return m, c
}

// URL returns the real redis-server's URL, or skips the test loudly when the
// suite was not started by scripts/test.
func URL(t testing.TB) string {
	t.Helper()
	u := os.Getenv(EnvURL)
	if u == "" {
		t.Skipf("SKIPPED: integration test needs a real redis-server; run scripts/test (or set %s=redis://127.0.0.1:6379)", EnvURL)
	}
	return u
}

// Real returns a client to the real redis-server (skipping as URL does) and a
// fresh namespace whose keys are deleted when the test ends.
func Real(t testing.TB) (redis.UniversalClient, keyspace.Keyspace) {
	t.Helper()
	o, err := redis.ParseURL(URL(t))
	if err != nil {
		t.Fatalf("testredis: %v", err)
	}
	c := redis.NewClient(o)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("testredis: ping %s: %v", o.Addr, err)
	}
	ks := keyspace.MustNew(Namespace(t))
	t.Cleanup(func() {
		Purge(context.Background(), c, ks)
		_ = c.Close()
	})
	return c, ks
}

// Namespace returns a namespace unique to this test run.
func Namespace(t testing.TB) string {
	var b [4]byte
	_, _ = rand.Read(b[:])
	return fmt.Sprintf("t%s", hex.EncodeToString(b[:]))
}

// Purge deletes every key of the namespace.
func Purge(ctx context.Context, c redis.UniversalClient, ks keyspace.Keyspace) {
	iter := c.Scan(ctx, 0, ks.Base()+"*", 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 500 {
			c.Del(ctx, batch...)
			batch = batch[:0]
		}
	}
	if len(batch) > 0 {
		c.Del(ctx, batch...)
	}
}
