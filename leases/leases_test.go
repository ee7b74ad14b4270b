package leases

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/internal/testwait"
	"github.com/megane-go/megane/keyspace"
)

func setup(t *testing.T) (*miniredis.Miniredis, redis.UniversalClient, keyspace.Keyspace) {
	t.Helper()
	mr := miniredis.RunT(t)
	mr.SetTime(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	return mr, rdb, keyspace.MustNew("t")
}

func TestClaimRenewExpireTakeOver(t *testing.T) {
	mr, rdb, ks := setup(t)
	ctx := context.Background()
	a := Holder{ID: "a", Host: "h1", PID: 1}
	b := Holder{ID: "b", Host: "h2", PID: 2}
	name := ClusterName(3)
	ttl := 10 * time.Second

	ta, err := Claim(ctx, rdb, ks, name, a, ttl)
	if err != nil || ta != 1 {
		t.Fatalf("first claim: token %d, %v", ta, err)
	}
	if raw := mr.HGet(ks.Lease(name), FieldOwner); raw != "a" {
		t.Fatalf("owner field %q", raw)
	}
	if _, err := Claim(ctx, rdb, ks, name, b, ttl); !errors.Is(err, ErrHeld) {
		t.Fatalf("claim of a held lease: %v, want ErrHeld", err)
	}
	mr.SetTime(time.Date(2026, 1, 1, 0, 0, 8, 0, time.UTC))
	if err := Renew(ctx, rdb, ks, name, "a", ta, ttl); err != nil {
		t.Fatalf("renew: %v", err)
	}
	if rem, err := Check(ctx, rdb, ks, name, ta); err != nil || rem != ttl {
		t.Fatalf("check after renew: %s, %v", rem, err)
	}
	// Past the renewed expiry, b takes over with a higher token.
	mr.SetTime(time.Date(2026, 1, 1, 0, 0, 18, 1e6, time.UTC))
	if _, err := Check(ctx, rdb, ks, name, ta); !errors.Is(err, ErrLost) {
		t.Fatalf("check of an expired lease: %v, want ErrLost", err)
	}
	if err := Renew(ctx, rdb, ks, name, "a", ta, ttl); !errors.Is(err, ErrLost) {
		t.Fatalf("renew of an expired lease: %v, want ErrLost", err)
	}
	tb, err := Claim(ctx, rdb, ks, name, b, ttl)
	if err != nil || tb != 2 {
		t.Fatalf("takeover: token %d, %v", tb, err)
	}
	if err := Renew(ctx, rdb, ks, name, "a", ta, ttl); !errors.Is(err, ErrLost) {
		t.Fatalf("stale renew after takeover: %v, want ErrLost", err)
	}
	// A stale release does nothing; the owner's frees it at once.
	if err := Release(ctx, rdb, ks, name, "a", ta); err != nil {
		t.Fatal(err)
	}
	if ls, _ := Read(ctx, rdb, ks, []string{name}); ls[0].Owner != "b" || ls[0].Token != 2 {
		t.Fatalf("after stale release: %+v", ls[0])
	}
	if err := Release(ctx, rdb, ks, name, "b", tb); err != nil {
		t.Fatal(err)
	}
	if ta2, err := Claim(ctx, rdb, ks, name, a, ttl); err != nil || ta2 != 3 {
		t.Fatalf("claim after release: token %d, %v", ta2, err)
	}
}

func TestNoteUnowned(t *testing.T) {
	mr, rdb, ks := setup(t)
	ctx := context.Background()
	name := ClusterName(0)
	first, since, err := NoteUnowned(ctx, rdb, ks, name)
	if err != nil || !first || since.IsZero() {
		t.Fatalf("first note: %v %s %v", first, since, err)
	}
	again, since2, err := NoteUnowned(ctx, rdb, ks, name)
	if err != nil || again || !since2.Equal(since) {
		t.Fatalf("second note: %v %s %v", again, since2, err)
	}
	if _, err := Claim(ctx, rdb, ks, name, Holder{ID: "a"}, time.Second); err != nil {
		t.Fatal(err)
	}
	if mr.HGet(ks.Lease(name), FieldUnownedSince) != "" {
		t.Fatal("a claim keeps unowned_since")
	}
	if held, at, err := NoteUnowned(ctx, rdb, ks, name); err != nil || held || !at.IsZero() {
		t.Fatalf("note of a held lease: %v %s %v", held, at, err)
	}
}

func TestLauncherRecords(t *testing.T) {
	_, rdb, ks := setup(t)
	ctx := context.Background()
	start := time.UnixMilli(time.Now().UnixMilli())
	a := Launcher{ID: "a", Host: "h1", PID: 10, Capacity: 2, Owned: []int{0, 1}, StartedAt: start, Addr: "launcher:a"}
	b := Launcher{ID: "b", Host: "h2", PID: 11, Capacity: 4, StartedAt: start, Addr: "launcher:b"}
	for _, l := range []Launcher{b, a} {
		if err := Register(ctx, rdb, ks, l, time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	got, err := Launchers(ctx, rdb, ks)
	if err != nil || len(got) != 2 {
		t.Fatalf("launchers %+v, %v", got, err)
	}
	if g := got[0]; g.ID != "a" || g.Host != "h1" || g.PID != 10 || g.Capacity != 2 || len(g.Owned) != 2 ||
		g.Owned[1] != 1 || !g.StartedAt.Equal(start) || g.Addr != "launcher:a" {
		t.Fatalf("record a read back as %+v", g)
	}
	if len(got[1].Owned) != 0 {
		t.Fatalf("b owns %v", got[1].Owned)
	}
	if err := Deregister(ctx, rdb, ks, "a"); err != nil {
		t.Fatal(err)
	}
	if got, _ := Launchers(ctx, rdb, ks); len(got) != 1 || got[0].ID != "b" {
		t.Fatalf("after deregister: %+v", got)
	}
}

func TestPlanLock(t *testing.T) {
	_, rdb, ks := setup(t)
	ctx := context.Background()
	unlock, err := LockPlan(ctx, rdb, ks, "a", time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := LockPlan(ctx, rdb, ks, "b", 150*time.Millisecond); !errors.Is(err, ErrLocked) {
		t.Fatalf("second lock: %v, want ErrLocked", err)
	}
	unlock()
	unlockB, err := LockPlan(ctx, rdb, ks, "b", time.Second)
	if err != nil {
		t.Fatalf("lock after unlock: %v", err)
	}
	unlockB()
}

// TestScriptsOnRedisServer runs the scripts on a real redis-server, whose
// TIME moves by itself.
func TestScriptsOnRedisServer(t *testing.T) {
	rdb, ks := testredis.Real(t)
	ctx := context.Background()
	name := ServiceName("stats", 1)
	tok, err := Claim(ctx, rdb, ks, name, Holder{ID: "a", Host: "h", PID: 1}, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	rem, err := Check(ctx, rdb, ks, name, tok)
	if err != nil || rem <= 0 || rem > 5*time.Second {
		t.Fatalf("check: %s, %v", rem, err)
	}
	if err := Renew(ctx, rdb, ks, name, "a", tok, 50*time.Millisecond); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 5*time.Second, "the lease to expire", func() bool {
		_, err := Check(ctx, rdb, ks, name, tok)
		return errors.Is(err, ErrLost)
	})
	if tok2, err := Claim(ctx, rdb, ks, name, Holder{ID: "b"}, time.Second); err != nil || tok2 != tok+1 {
		t.Fatalf("takeover: %d, %v", tok2, err)
	}
}
