package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/store"
)

type note struct {
	Title string            `json:"title"`
	Tags  map[string]string `json:"tags,omitempty"`
	Inner *note             `json:"inner,omitempty"`
}

// badText is a TextMarshaler whose text is not UTF-8; encoding/json would
// replace the bytes silently.
type badText struct{}

func (badText) MarshalText() ([]byte, error) { return []byte("a\xffb"), nil }

// TestStoreRejectsBadInput: invalid UTF-8 (once silently turned into
// U+FFFD), values over MaxValueSize (a 200 MiB value was once accepted),
// bad names and bad TTLs fail with their sentinel, before anything reaches
// Redis.
func TestStoreRejectsBadInput(t *testing.T) {
	_, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("unit")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s := store.New(rdb, ks)
	b := s.Bucket("b")
	long := strings.Repeat("k", store.MaxNameSize+1)
	tests := []struct {
		name string
		op   func() error
		want error
	}{
		{"string value", func() error { return b.Set(ctx, "k", "a\xffb") }, store.ErrInvalidUTF8},
		{"string in struct", func() error { return b.Set(ctx, "k", note{Title: "\xc3"}) }, store.ErrInvalidUTF8},
		{"nested map key", func() error {
			return b.Set(ctx, "k", note{Title: "ok", Inner: &note{Tags: map[string]string{"\xfe": "v"}}})
		}, store.ErrInvalidUTF8},
		{"string in slice of any", func() error { return b.Set(ctx, "k", []any{1, "ok", "\xed\xa0\x80"}) }, store.ErrInvalidUTF8},
		{"raw message bytes", func() error { return b.Set(ctx, "k", json.RawMessage("\"\xff\"")) }, store.ErrInvalidUTF8},
		{"text marshaler", func() error { return b.Set(ctx, "k", map[string]any{"t": badText{}}) }, store.ErrInvalidUTF8},
		{"typed", func() error { return store.NewTyped[note](b).Set(ctx, "k", note{Title: "\xff"}) }, store.ErrInvalidUTF8},
		{"too large", func() error { return b.Set(ctx, "k", strings.Repeat("a", store.MaxValueSize)) }, store.ErrValueTooLarge},
		{"too large raw", func() error { return b.Set(ctx, "k", json.RawMessage(`"`+strings.Repeat("a", store.MaxValueSize)+`"`)) }, store.ErrValueTooLarge},
		{"key not UTF-8", func() error { return b.Set(ctx, "\xff", 1) }, store.ErrInvalidUTF8},
		{"empty key", func() error { return b.Set(ctx, "", 1) }, store.ErrInvalidName},
		{"long key", func() error { return b.Set(ctx, long, 1) }, store.ErrInvalidName},
		{"get bad key", func() error { var v int; return b.Get(ctx, "\xff", &v) }, store.ErrInvalidUTF8},
		{"get raw bad key", func() error { _, err := b.GetRaw(ctx, ""); return err }, store.ErrInvalidName},
		{"delete bad key", func() error { _, err := b.Delete(ctx, "\xff"); return err }, store.ErrInvalidUTF8},
		{"exists bad key", func() error { _, err := b.Exists(ctx, "\xff"); return err }, store.ErrInvalidUTF8},
		{"incr bad key", func() error { _, err := b.Incr(ctx, "\xff", 1); return err }, store.ErrInvalidUTF8},
		{"cas bad new", func() error { _, err := b.CompareAndSet(ctx, "k", nil, "\xff"); return err }, store.ErrInvalidUTF8},
		{"cas bad old", func() error { _, err := b.CompareAndSet(ctx, "k", "\xff", "x"); return err }, store.ErrInvalidUTF8},
		{"cas new too large", func() error {
			_, err := b.CompareAndSet(ctx, "k", nil, strings.Repeat("a", store.MaxValueSize))
			return err
		}, store.ErrValueTooLarge},
		{"set if absent", func() error { _, err := store.NewTyped[string](b).SetIfAbsent(ctx, "k", "\xff"); return err }, store.ErrInvalidUTF8},
		{"bucket not UTF-8", func() error { return s.Bucket("\xff").Set(ctx, "k", 1) }, store.ErrInvalidUTF8},
		{"empty bucket", func() error { return s.Bucket("").Set(ctx, "k", 1) }, store.ErrInvalidName},
		{"long bucket", func() error { _, err := s.Bucket(long).Keys(ctx); return err }, store.ErrInvalidName},
		{"bad bucket all", func() error { _, err := s.Bucket("\xff").All(ctx); return err }, store.ErrInvalidUTF8},
		{"bad bucket clear", func() error { return s.Bucket("\xff").Clear(ctx) }, store.ErrInvalidUTF8},
		{"negative TTL", func() error { return s.Bucket("t", store.WithTTL(-time.Second)).Set(ctx, "k", 1) }, store.ErrInvalidTTL},
		{"sub-ms TTL", func() error {
			_, err := s.Bucket("t", store.WithTTL(500*time.Microsecond)).CompareAndSet(ctx, "k", nil, 1)
			return err
		}, store.ErrInvalidTTL},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.op(); !errors.Is(err, tt.want) {
				t.Fatalf("error %v, want %v", err, tt.want)
			}
		})
	}
	if n := rdb.DBSize(ctx).Val(); n != 0 {
		keys := rdb.Keys(ctx, "*").Val()
		t.Fatalf("rejected writes left %d keys: %v", n, keys)
	}
}

// TestStoreAcceptsWhatIsValid: the checks have no false alarms on values
// that look like replaced bytes but are not.
func TestStoreAcceptsWhatIsValid(t *testing.T) {
	_, rdb := testredis.Mini(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b := store.New(rdb, keyspace.MustNew("unit")).Bucket("b")
	for _, tc := range []struct {
		name string
		in   any
		raw  string
	}{
		{"replacement character", "a\uFFFDb", "\"a\uFFFDb\""},
		{"escaped backslash then ufffd", `\ufffd`, `"\\ufffd"`},
		{"raw escape", json.RawMessage(`"\ufffd"`), `"\ufffd"`},
		{"bytes", []byte{0xff, 0xfe}, `"//4="`},
		{"unicode", map[string]string{"ключ": "日本"}, `{"ключ":"日本"}`},
		{"largest string", strings.Repeat("a", store.MaxValueSize-2), `"` + strings.Repeat("a", store.MaxValueSize-2) + `"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := b.Set(ctx, "k", tc.in); err != nil {
				t.Fatal(err)
			}
			if raw, err := b.GetRaw(ctx, "k"); err != nil || string(raw) != tc.raw {
				t.Fatalf("stored %.40q, %v; want %.40q", raw, err, tc.raw)
			}
		})
	}
	long := strings.Repeat("é", store.MaxNameSize/2)
	if err := store.New(rdb, keyspace.MustNew("unit")).Bucket(long).Set(ctx, long, 1); err != nil {
		t.Fatalf("name of MaxNameSize bytes: %v", err)
	}
	if err := store.New(rdb, keyspace.MustNew("unit")).Bucket("t", store.WithTTL(time.Millisecond)).Set(ctx, "k", 1); err != nil {
		t.Fatalf("1ms TTL: %v", err)
	}
}

// TestStoreRejectsBadInputRealRedis: the same checks in front of a real
// redis-server, which also refuses an Incr that would overflow.
func TestStoreRejectsBadInputRealRedis(t *testing.T) {
	testredis.EachBackend(t, testStoreRejectsBadInputRealRedis)
}

func testStoreRejectsBadInputRealRedis(t *testing.T) {
	rdb, ks := testredis.Real(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	b := store.New(rdb, ks).Bucket("limits")
	if err := b.Set(ctx, "k", "a\xffb"); !errors.Is(err, store.ErrInvalidUTF8) {
		t.Fatalf("Set invalid UTF-8: %v", err)
	}
	if err := b.Set(ctx, "k", strings.Repeat("a", store.MaxValueSize)); !errors.Is(err, store.ErrValueTooLarge) {
		t.Fatalf("Set too large: %v", err)
	}
	if n := rdb.Exists(ctx, ks.StoreBucket("limits")).Val(); n != 0 {
		t.Fatal("a rejected write reached Redis")
	}
	if _, err := b.Incr(ctx, "n", 1<<62); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Incr(ctx, "n", 1<<62); err == nil || !strings.Contains(err.Error(), "overflow") {
		t.Fatalf("Incr past int64: %v, want Redis's overflow error", err)
	}
}
