package identify

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/keyspace"
)

var quiet = slog.New(slog.DiscardHandler)

func newPair(t *testing.T, maxConcurrency int, opts ...Option) (*miniredis.Miniredis, redis.UniversalClient, keyspace.Keyspace, *Limiter, *Limiter) {
	t.Helper()
	m, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("test")
	opts = append([]Option{WithLogger(quiet), WithMaxPoll(10 * time.Millisecond)}, opts...)
	// Two limiters on one Redis stand for two processes.
	a := NewLimiter(rdb, ks, maxConcurrency, opts...)
	b := NewLimiter(rdb, ks, maxConcurrency, opts...)
	return m, rdb, ks, a, b
}

func waitCtx(t *testing.T, d time.Duration) context.Context {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

// mustBlock asserts that Wait does not get the bucket within a short deadline.
func mustBlock(t *testing.T, l *Limiter, shard int) {
	t.Helper()
	err := l.Wait(waitCtx(t, 150*time.Millisecond), shard)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait(shard %d) = %v, want it to block until the deadline", shard, err)
	}
}

func mustAcquire(t *testing.T, l *Limiter, shard int) {
	t.Helper()
	if err := l.Wait(waitCtx(t, 5*time.Second), shard); err != nil {
		t.Fatalf("Wait(shard %d): %v", shard, err)
	}
}

func TestLimiterExcludesAcrossInstances(t *testing.T) {
	m, _, ks, a, b := newPair(t, 1)

	mustAcquire(t, a, 0)
	if got := m.TTL(ks.IdentifyBucket(0)); got != DefaultHandshakeTTL {
		t.Fatalf("bucket TTL during handshake = %s, want %s", got, DefaultHandshakeTTL)
	}
	// Shard 1 shares bucket 0 with max_concurrency 1: the other process waits.
	mustBlock(t, b, 1)

	a.Unlock(0)
	if got := m.TTL(ks.IdentifyBucket(0)); got != DefaultWindow+DefaultMargin {
		t.Fatalf("bucket TTL after unlock = %s, want %s", got, DefaultWindow+DefaultMargin)
	}
	// Released, but the 5 s window after READY still holds the bucket.
	mustBlock(t, b, 1)

	m.FastForward(DefaultWindow + DefaultMargin)
	mustAcquire(t, b, 1)
}

func TestLimiterBucketsAreIndependent(t *testing.T) {
	_, _, _, a, b := newPair(t, 2)
	mustAcquire(t, a, 0) // bucket 0
	mustAcquire(t, b, 1) // bucket 1
	mustBlock(t, b, 2)   // bucket 0 again
	if a.Bucket(5) != 1 || a.MaxConcurrency() != 2 {
		t.Fatalf("Bucket(5) = %d, MaxConcurrency = %d", a.Bucket(5), a.MaxConcurrency())
	}
}

func TestLimiterWindowOption(t *testing.T) {
	m, _, ks, a, b := newPair(t, 1, WithWindow(time.Second), WithMargin(100*time.Millisecond))
	if a.Hold() != 1100*time.Millisecond {
		t.Fatalf("Hold = %s", a.Hold())
	}
	mustAcquire(t, a, 0)
	a.Unlock(0)
	if got := m.TTL(ks.IdentifyBucket(0)); got != 1100*time.Millisecond {
		t.Fatalf("TTL after unlock = %s, want 1.1s", got)
	}
	m.FastForward(time.Second)
	mustBlock(t, b, 0) // the margin is still running
	m.FastForward(100 * time.Millisecond)
	mustAcquire(t, b, 0)
}

func TestLimiterHonoursDeadline(t *testing.T) {
	_, _, _, a, b := newPair(t, 1)
	mustAcquire(t, a, 0)

	start := time.Now()
	err := b.Wait(waitCtx(t, 200*time.Millisecond), 0)
	elapsed := time.Since(start)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Wait = %v, want DeadlineExceeded", err)
	}
	if elapsed > 2*time.Second {
		t.Fatalf("Wait returned %s after a 200ms deadline", elapsed)
	}

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := b.Wait(ctx, 0); !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait(cancelled) = %v, want Canceled", err)
	}
}

func TestLimiterUnlockOnlyOwnLock(t *testing.T) {
	m, rdb, ks, a, b := newPair(t, 1, WithHandshakeTTL(2*time.Second))
	key := ks.IdentifyBucket(0)

	mustAcquire(t, a, 0)
	// a's handshake hangs past the handshake TTL; the lock expires and b takes it.
	m.FastForward(2 * time.Second)
	mustAcquire(t, b, 1)
	bToken, err := rdb.Get(context.Background(), key).Result()
	if err != nil {
		t.Fatal(err)
	}

	a.Unlock(0) // late: must not shorten b's handshake hold
	if got := m.TTL(key); got != 2*time.Second {
		t.Fatalf("TTL after foreign unlock = %s, want b's untouched 2s", got)
	}
	if v, _ := rdb.Get(context.Background(), key).Result(); v != bToken {
		t.Fatalf("lock value changed to %q", v)
	}
	a.Unlock(0) // unknown shard: no-op

	b.Unlock(1)
	if got := m.TTL(key); got != DefaultWindow+DefaultMargin {
		t.Fatalf("TTL after own unlock = %s", got)
	}
}

func TestLimiterClose(t *testing.T) {
	_, _, _, a, b := newPair(t, 1)
	mustAcquire(t, a, 0)

	done := make(chan error, 1)
	go func() { done <- b.Wait(context.Background(), 0) }()
	b.Close(context.Background())
	select {
	case err := <-done:
		if !errors.Is(err, ErrLimiterClosed) {
			t.Fatalf("Wait after Close = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Wait did not return after Close")
	}
	if err := b.Wait(context.Background(), 0); !errors.Is(err, ErrLimiterClosed) {
		t.Fatalf("Wait on closed limiter = %v", err)
	}
}

func TestLimiterSpendsSessionStarts(t *testing.T) {
	m, rdb, ks, a, _ := newPair(t, 4)
	ctx := context.Background()

	// Without gateway info nothing is invented.
	mustAcquire(t, a, 0)
	if m.Exists(ks.Gateway()) {
		t.Fatal("Wait created the gateway hash")
	}

	if err := SaveGatewayInfo(ctx, rdb, ks, GatewayInfo{Shards: 4, MaxConcurrency: 4, Total: 1000, Remaining: 10}); err != nil {
		t.Fatal(err)
	}
	mustAcquire(t, a, 1)
	mustAcquire(t, a, 2)
	if got := m.HGet(ks.Gateway(), "remaining"); got != "8" {
		t.Fatalf("remaining = %q, want 8", got)
	}
}

// TestLimiterSpacingRealRedis checks the contract end to end on a real
// Redis, with real expiry: across two instances, every IDENTIFY of a bucket
// starts at least the window after the previous handshake ended.
func TestLimiterSpacingRealRedis(t *testing.T) { testredis.EachBackend(t, testLimiterSpacingRealRedis) }

func testLimiterSpacingRealRedis(t *testing.T) {
	rdb, ks := testredis.Real(t)
	const window = 200 * time.Millisecond
	opts := []Option{WithLogger(quiet), WithWindow(window), WithMargin(20 * time.Millisecond), WithMaxPoll(20 * time.Millisecond)}
	limiters := []*Limiter{NewLimiter(rdb, ks, 1, opts...), NewLimiter(rdb, ks, 1, opts...)}

	type span struct{ start, end time.Time }
	var (
		mu    sync.Mutex
		spans []span
		wg    sync.WaitGroup
	)
	ctx := waitCtx(t, 20*time.Second)
	for shard := range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := limiters[shard%2]
			if err := l.Wait(ctx, shard); err != nil {
				t.Errorf("Wait(%d): %v", shard, err)
				return
			}
			s := span{start: time.Now()}
			time.Sleep(10 * time.Millisecond) // the handshake
			s.end = time.Now()
			l.Unlock(shard)
			mu.Lock()
			spans = append(spans, s)
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(spans) != 6 {
		t.Fatalf("%d handshakes, want 6", len(spans))
	}
	for i := range spans {
		for j := range spans {
			if i == j || spans[j].start.Before(spans[i].start) {
				continue
			}
			if gap := spans[j].start.Sub(spans[i].end); gap < window {
				t.Errorf("handshake started %s after the previous one ended; want >= %s", gap, window)
			}
		}
	}
}
