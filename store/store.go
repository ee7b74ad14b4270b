// Package store is Megane's central data store: typed, namespaced values in
// Redis hashes that every process can read and change, and that survive any
// process restart.
//
// A Bucket is one hash (keyspace StoreBucket); each key is a field whose
// value is JSON, so `redis-cli HGETALL megane:<ns>:store:<bucket>` shows it
// as it is. Every value can be stored, zero values included: 0, false, ""
// and null are values, not absences. Incr keeps integers as plain numbers,
// which are JSON too, so Get can read them back.
//
// Bucket names, keys and values are checked before Redis is contacted:
// names are 1..MaxNameSize bytes, values at most MaxValueSize bytes of
// JSON, and every string valid UTF-8 (ErrInvalidName, ErrValueTooLarge,
// ErrInvalidUTF8).
package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
)

// ErrNotFound is returned (wrapped) by Get for a key that has no value.
var ErrNotFound = errors.New("store: not found")

// Store opens buckets on one Redis and namespace. It is safe for
// concurrent use.
type Store struct {
	rdb redis.UniversalClient
	ks  keyspace.Keyspace
}

// New returns a store on rdb in the namespace of ks.
func New(rdb redis.UniversalClient, ks keyspace.Keyspace) *Store {
	return &Store{rdb: rdb, ks: ks}
}

// BucketOption configures a Bucket.
type BucketOption func(*bucketConfig)

type bucketConfig struct {
	ttl time.Duration
}

// WithTTL makes the whole bucket expire d after its last write. Redis 7.0
// has no per-field expiry, so the TTL belongs to the bucket: every write
// pushes it back. d is at least a millisecond (Redis's unit); a negative or
// smaller d makes every operation of the bucket fail with ErrInvalidTTL.
func WithTTL(d time.Duration) BucketOption {
	return func(c *bucketConfig) { c.ttl = d }
}

// Bucket is one named set of keys.
type Bucket struct {
	s      *Store
	name   string
	key    string
	ttl    time.Duration
	listed atomic.Bool
	// err is why the bucket cannot be used (a bad name or TTL); every
	// operation returns it.
	err error
}

// Bucket returns the bucket name. Opening a bucket touches no Redis key;
// the first write records the name in the bucket list. A name that is
// empty, longer than MaxNameSize or not valid UTF-8, or a bad option,
// makes every operation of the bucket return the error.
func (s *Store) Bucket(name string, opts ...BucketOption) *Bucket {
	var c bucketConfig
	for _, o := range opts {
		o(&c)
	}
	b := &Bucket{s: s, name: name, ttl: c.ttl}
	b.err = errors.Join(checkName("bucket name", name, ""), checkTTL(name, c.ttl))
	if b.err == nil {
		b.key = s.ks.StoreBucket(name)
	}
	return b
}

// check returns the bucket's own error, or key's.
func (b *Bucket) check(key string) error {
	if b.err != nil {
		return b.err
	}
	return checkName("key", key, " of bucket "+b.name)
}

// checkBucket returns the bucket's own error.
func (b *Bucket) checkBucket() error { return b.err }

// Buckets lists the names of buckets that were written to.
func (s *Store) Buckets(ctx context.Context) ([]string, error) {
	v, err := s.rdb.SMembers(ctx, s.ks.StoreBuckets()).Result()
	if err != nil {
		return nil, fmt.Errorf("store: list buckets: %w", err)
	}
	return v, nil
}

// Name returns the bucket's name.
func (b *Bucket) Name() string { return b.name }

// Get unmarshals the value of key into out. It returns an error wrapping
// ErrNotFound when key has no value.
func (b *Bucket) Get(ctx context.Context, key string, out any) error {
	if err := b.check(key); err != nil {
		return err
	}
	v, err := b.s.rdb.HGet(ctx, b.key, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return fmt.Errorf("%w: %s/%s", ErrNotFound, b.name, key)
	}
	if err != nil {
		return fmt.Errorf("store: get %s/%s: %w", b.name, key, err)
	}
	if err := json.Unmarshal(v, out); err != nil {
		return fmt.Errorf("store: decode %s/%s: %w", b.name, key, err)
	}
	return nil
}

// GetRaw returns the JSON stored under key.
func (b *Bucket) GetRaw(ctx context.Context, key string) (json.RawMessage, error) {
	if err := b.check(key); err != nil {
		return nil, err
	}
	v, err := b.s.rdb.HGet(ctx, b.key, key).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("%w: %s/%s", ErrNotFound, b.name, key)
	}
	if err != nil {
		return nil, fmt.Errorf("store: get %s/%s: %w", b.name, key, err)
	}
	return v, nil
}

// Set stores v (any JSON-marshalable value, zero values included) under key.
// Its JSON must fit MaxValueSize and its strings be valid UTF-8.
func (b *Bucket) Set(ctx context.Context, key string, v any) error {
	if err := b.check(key); err != nil {
		return err
	}
	data, err := encodeValue(b.name+"/"+key, v)
	if err != nil {
		return err
	}
	pipe := b.s.rdb.Pipeline()
	pipe.HSet(ctx, b.key, key, data)
	b.afterWrite(ctx, pipe)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("store: set %s/%s: %w", b.name, key, err)
	}
	b.listed.Store(true)
	return nil
}

// afterWrite queues the bucket's TTL refresh and, once per Bucket value,
// its entry in the bucket list.
func (b *Bucket) afterWrite(ctx context.Context, pipe redis.Pipeliner) {
	if b.ttl > 0 {
		pipe.PExpire(ctx, b.key, b.ttl)
	}
	if !b.listed.Load() {
		pipe.SAdd(ctx, b.s.ks.StoreBuckets(), b.name)
	}
}

// Delete removes key. It reports whether key had a value.
func (b *Bucket) Delete(ctx context.Context, key string) (bool, error) {
	if err := b.check(key); err != nil {
		return false, err
	}
	n, err := b.s.rdb.HDel(ctx, b.key, key).Result()
	if err != nil {
		return false, fmt.Errorf("store: delete %s/%s: %w", b.name, key, err)
	}
	return n == 1, nil
}

// Exists reports whether key has a value.
func (b *Bucket) Exists(ctx context.Context, key string) (bool, error) {
	if err := b.check(key); err != nil {
		return false, err
	}
	ok, err := b.s.rdb.HExists(ctx, b.key, key).Result()
	if err != nil {
		return false, fmt.Errorf("store: exists %s/%s: %w", b.name, key, err)
	}
	return ok, nil
}

// Incr atomically adds delta to the integer under key (a missing key
// counts as 0) and returns the new value. It fails if the value is not an
// integer, or if the sum overflows 64 bits.
func (b *Bucket) Incr(ctx context.Context, key string, delta int64) (int64, error) {
	if err := b.check(key); err != nil {
		return 0, err
	}
	pipe := b.s.rdb.Pipeline()
	cmd := pipe.HIncrBy(ctx, b.key, key, delta)
	b.afterWrite(ctx, pipe)
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, fmt.Errorf("store: incr %s/%s: %w", b.name, key, err)
	}
	b.listed.Store(true)
	return cmd.Val(), nil
}

// casScript sets a field only if its current value is the expected one.
//
//	KEYS[1] -> the bucket hash
//	ARGV[1] -> field
//	ARGV[2] -> "1" when the field must be absent, else "0"
//	ARGV[3] -> expected JSON (ignored when ARGV[2] is "1")
//	ARGV[4] -> new JSON
//	ARGV[5] -> bucket TTL in ms, "0" for none
//
// Output: 1 if set, 0 if the current value differed.
var casScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if ARGV[2] == '1' then
  if cur then return 0 end
elseif cur ~= ARGV[3] then
  return 0
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[4])
if ARGV[5] ~= '0' then redis.call('PEXPIRE', KEYS[1], ARGV[5]) end
return 1
`)

// CompareAndSet atomically stores new under key if the current value is
// old, and reports whether it did. Values are compared as JSON: old is
// marshalled and must equal the stored JSON byte for byte (structs and maps
// marshal deterministically). A nil old means "key has no value"; to
// compare against a stored null pass json.RawMessage("null").
//
// Both values are held to Set's limits.
func (b *Bucket) CompareAndSet(ctx context.Context, key string, old, new any) (bool, error) {
	if err := b.check(key); err != nil {
		return false, err
	}
	absent, oldJSON := "1", []byte(nil)
	if old != nil {
		var err error
		if oldJSON, err = encodeValue("the expected value of "+b.name+"/"+key, old); err != nil {
			return false, err
		}
		absent = "0"
		oldJSON = compact(oldJSON)
	}
	newJSON, err := encodeValue(b.name+"/"+key, new)
	if err != nil {
		return false, err
	}
	ok, err := casScript.Run(ctx, b.s.rdb, []string{b.key}, key, absent, oldJSON, newJSON, b.ttl.Milliseconds()).Int()
	if err != nil {
		return false, fmt.Errorf("store: compare-and-set %s/%s: %w", b.name, key, err)
	}
	if ok == 1 && !b.listed.Load() {
		if err := b.s.rdb.SAdd(ctx, b.s.ks.StoreBuckets(), b.name).Err(); err == nil {
			b.listed.Store(true)
		}
	}
	return ok == 1, nil
}

// compact normalises a json.RawMessage the caller passed, so it compares
// equal to what Set stored (json.Marshal compacts raw messages too).
func compact(b []byte) []byte {
	var buf bytes.Buffer
	if json.Compact(&buf, b) != nil {
		return b
	}
	return buf.Bytes()
}

// Keys lists the bucket's keys. It uses HSCAN, so a large bucket does not
// block Redis.
func (b *Bucket) Keys(ctx context.Context) ([]string, error) {
	if err := b.checkBucket(); err != nil {
		return nil, err
	}
	// HSCAN ... NOVALUES needs Redis 7.4; skip the values by hand.
	var out []string
	var cursor uint64
	for {
		kv, next, err := b.s.rdb.HScan(ctx, b.key, cursor, "", 1000).Result()
		if err != nil {
			return nil, fmt.Errorf("store: keys of %s: %w", b.name, err)
		}
		for i := 0; i < len(kv); i += 2 {
			out = append(out, kv[i])
		}
		if cursor = next; cursor == 0 {
			return out, nil
		}
	}
}

// All returns every key of the bucket with its JSON value.
func (b *Bucket) All(ctx context.Context) (map[string]json.RawMessage, error) {
	if err := b.checkBucket(); err != nil {
		return nil, err
	}
	h, err := b.s.rdb.HGetAll(ctx, b.key).Result()
	if err != nil {
		return nil, fmt.Errorf("store: read %s: %w", b.name, err)
	}
	out := make(map[string]json.RawMessage, len(h))
	for k, v := range h {
		out[k] = json.RawMessage(v)
	}
	return out, nil
}

// Clear deletes every key of the bucket.
func (b *Bucket) Clear(ctx context.Context) error {
	if err := b.checkBucket(); err != nil {
		return err
	}
	pipe := b.s.rdb.Pipeline()
	pipe.Del(ctx, b.key)
	pipe.SRem(ctx, b.s.ks.StoreBuckets(), b.name)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("store: clear %s: %w", b.name, err)
	}
	b.listed.Store(false)
	return nil
}

// Typed is a Bucket whose values all have type T.
type Typed[T any] struct {
	b *Bucket
}

// NewTyped returns a typed view of b.
func NewTyped[T any](b *Bucket) Typed[T] { return Typed[T]{b: b} }

// Bucket returns the underlying bucket.
func (t Typed[T]) Bucket() *Bucket { return t.b }

// Get returns the value of key; an error wrapping ErrNotFound when it has none.
func (t Typed[T]) Get(ctx context.Context, key string) (T, error) {
	var v T
	err := t.b.Get(ctx, key, &v)
	return v, err
}

// Set stores v under key.
func (t Typed[T]) Set(ctx context.Context, key string, v T) error { return t.b.Set(ctx, key, v) }

// Delete removes key and reports whether it had a value.
func (t Typed[T]) Delete(ctx context.Context, key string) (bool, error) { return t.b.Delete(ctx, key) }

// Exists reports whether key has a value.
func (t Typed[T]) Exists(ctx context.Context, key string) (bool, error) { return t.b.Exists(ctx, key) }

// CompareAndSet stores new if the current value equals old.
func (t Typed[T]) CompareAndSet(ctx context.Context, key string, old, new T) (bool, error) {
	return t.b.CompareAndSet(ctx, key, old, new)
}

// SetIfAbsent stores v if key has no value, and reports whether it did.
func (t Typed[T]) SetIfAbsent(ctx context.Context, key string, v T) (bool, error) {
	return t.b.CompareAndSet(ctx, key, nil, v)
}

// Keys lists the keys.
func (t Typed[T]) Keys(ctx context.Context) ([]string, error) { return t.b.Keys(ctx) }
