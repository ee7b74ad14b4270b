package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/store"
)

type profile struct {
	Name  string `json:"name"`
	Level int    `json:"level"`
}

func testStore(t *testing.T, rdb redis.UniversalClient, ks keyspace.Keyspace) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := store.New(rdb, ks)
	b := s.Bucket("settings")

	// Zero values are values: every one of them round-trips and exists.
	for _, tc := range []struct {
		key  string
		in   any
		out  func() any
		raw  string
		want any
	}{
		{"zero-int", 0, func() any { return new(int) }, "0", 0},
		{"false", false, func() any { return new(bool) }, "false", false},
		{"empty", "", func() any { return new(string) }, `""`, ""},
		{"null", nil, func() any { return new(*int) }, "null", (*int)(nil)},
		{"struct", profile{"ann", 3}, func() any { return new(profile) }, `{"name":"ann","level":3}`, profile{"ann", 3}},
		{"list", []int{1, 2}, func() any { return new([]int) }, "[1,2]", []int{1, 2}},
	} {
		t.Run(tc.key, func(t *testing.T) {
			if err := b.Set(ctx, tc.key, tc.in); err != nil {
				t.Fatal(err)
			}
			// The raw layout is plain JSON in one hash field, for redis-cli.
			if raw := rdb.HGet(ctx, ks.StoreBucket("settings"), tc.key).Val(); raw != tc.raw {
				t.Fatalf("raw = %q, want %q", raw, tc.raw)
			}
			out := tc.out()
			if err := b.Get(ctx, tc.key, out); err != nil {
				t.Fatal(err)
			}
			if got, _ := json.Marshal(out); string(got) != tc.raw {
				t.Fatalf("Get = %s, want %s", got, tc.raw)
			}
			if ok, err := b.Exists(ctx, tc.key); err != nil || !ok {
				t.Fatalf("Exists = %v, %v", ok, err)
			}
		})
	}

	var x int
	if err := b.Get(ctx, "missing", &x); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("Get missing: %v, want ErrNotFound", err)
	}
	if ok, err := b.Delete(ctx, "zero-int"); err != nil || !ok {
		t.Fatalf("Delete = %v, %v", ok, err)
	}
	if ok, _ := b.Exists(ctx, "zero-int"); ok {
		t.Fatal("deleted key still exists")
	}
	keys, err := b.Keys(ctx)
	slices.Sort(keys)
	if err != nil || !slices.Equal(keys, []string{"empty", "false", "list", "null", "struct"}) {
		t.Fatalf("Keys = %v, %v", keys, err)
	}
	if names, _ := s.Buckets(ctx); !slices.Contains(names, "settings") {
		t.Fatalf("Buckets = %v", names)
	}

	// Incr is atomic across concurrent writers and readable with Get.
	var wg sync.WaitGroup
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 10 {
				if _, err := b.Incr(ctx, "hits", 1); err != nil {
					t.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	var hits int64
	if err := b.Get(ctx, "hits", &hits); err != nil || hits != 200 {
		t.Fatalf("hits = %d, %v", hits, err)
	}
	if v, err := b.Incr(ctx, "hits", -200); err != nil || v != 0 {
		t.Fatalf("Incr -200 = %d, %v", v, err)
	}
	if _, err := b.Incr(ctx, "struct", 1); err == nil {
		t.Fatal("Incr of a non-integer succeeded")
	}

	// Compare-and-set.
	typed := store.NewTyped[profile](b)
	for _, tc := range []struct {
		name     string
		old, new any
		want     bool
	}{
		{"wrong old", profile{"bob", 1}, profile{"x", 0}, false},
		{"right old", profile{"ann", 3}, profile{"ann", 4}, true},
		{"stale old", profile{"ann", 3}, profile{"ann", 5}, false},
		{"absent but present", nil, profile{"z", 0}, false},
	} {
		ok, err := b.CompareAndSet(ctx, "struct", tc.old, tc.new)
		if err != nil || ok != tc.want {
			t.Fatalf("%s: CompareAndSet = %v, %v; want %v", tc.name, ok, err, tc.want)
		}
	}
	if p, err := typed.Get(ctx, "struct"); err != nil || p != (profile{"ann", 4}) {
		t.Fatalf("after CAS: %+v, %v", p, err)
	}
	if ok, err := typed.SetIfAbsent(ctx, "new", profile{"n", 0}); err != nil || !ok {
		t.Fatalf("SetIfAbsent = %v, %v", ok, err)
	}
	if ok, err := typed.SetIfAbsent(ctx, "new", profile{"m", 0}); err != nil || ok {
		t.Fatalf("second SetIfAbsent = %v, %v", ok, err)
	}
	if ok, err := b.CompareAndSet(ctx, "null", json.RawMessage(" null "), 1); err != nil || !ok {
		t.Fatalf("CAS from stored null = %v, %v", ok, err)
	}
	if ok, err := b.CompareAndSet(ctx, "false", false, true); err != nil || !ok {
		t.Fatalf("CAS from false = %v, %v", ok, err)
	}

	// A bucket TTL applies to the hash and is pushed back by every write.
	tb := s.Bucket("sessions", store.WithTTL(time.Minute))
	if err := tb.Set(ctx, "a", 1); err != nil {
		t.Fatal(err)
	}
	if ttl := rdb.PTTL(ctx, ks.StoreBucket("sessions")).Val(); ttl <= 0 || ttl > time.Minute {
		t.Fatalf("PTTL = %v, want (0, 1m]", ttl)
	}
	if err := tb.Clear(ctx); err != nil {
		t.Fatal(err)
	}
	if n := rdb.Exists(ctx, ks.StoreBucket("sessions")).Val(); n != 0 {
		t.Fatal("Clear left the hash")
	}
}

func TestStoreMiniredis(t *testing.T) {
	_, rdb := testredis.Mini(t)
	testStore(t, rdb, keyspace.MustNew("unit"))
}

func TestStoreRealRedis(t *testing.T) {
	testredis.EachBackend(t, func(t *testing.T) {
		rdb, ks := testredis.Real(t)
		testStore(t, rdb, ks)
	})
}

// The store is Redis: a value written by one client (process) is there for
// a brand-new client, as after a restart.
func TestStoreSurvivesRestart(t *testing.T) {
	m, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("unit")
	ctx := context.Background()
	if err := store.New(rdb, ks).Bucket("b").Set(ctx, "k", 0); err != nil {
		t.Fatal(err)
	}
	rdb2 := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer rdb2.Close()
	var v int
	if err := store.New(rdb2, ks).Bucket("b").Get(ctx, "k", &v); err != nil || v != 0 {
		t.Fatalf("Get after restart = %d, %v", v, err)
	}
}
