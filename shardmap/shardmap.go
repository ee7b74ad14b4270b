// Package shardmap owns the shard map, the keyspace.ShardMap hash that says
// which cluster runs which shard. Every process that writes or reads the map
// goes through it, so its layout is spelled out once:
//
//	<shard>      -> <cluster>  one field per mapped shard, both decimal
//	shard_count  -> the bot's shard count
//	clusters     -> how many clusters the launcher planned (0 .. clusters-1)
//
// The launcher writes the whole map (Save, or Add to fill in what went
// missing); a cluster adds its own shards and the shard count (Add). Routers,
// the cache readers and inspection read it (Load, Owners, ReadShardCount).
package shardmap

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
)

// Hash fields of keyspace.ShardMap besides the per-shard ones.
const (
	// FieldShardCount holds the bot's shard count.
	FieldShardCount = "shard_count"
	// FieldClusters holds the number of clusters the launcher planned.
	FieldClusters = "clusters"
)

// ErrNoShardCount is returned by ReadShardCount when the map has no
// shard_count (it was never written, or Redis lost it).
var ErrNoShardCount = errors.New("shardmap: no shard_count")

// Map is the shard map. The zero value is an empty map.
type Map struct {
	// ShardCount is the bot's shard count; zero when unknown.
	ShardCount int
	// Clusters is the number of clusters planned; zero when unknown (a
	// cluster writes only its own part of the map).
	Clusters int
	// Owners maps shard id -> cluster id.
	Owners map[int]int
}

// Owner returns the cluster that runs shard.
func (m Map) Owner(shard int) (cluster int, ok bool) {
	cluster, ok = m.Owners[shard]
	return cluster, ok
}

// ClusterShards returns the shards the map gives cluster, sorted.
func (m Map) ClusterShards(cluster int) []int {
	var out []int
	for s, c := range m.Owners {
		if c == cluster {
			out = append(out, s)
		}
	}
	sort.Ints(out)
	return out
}

// ClusterIDs returns every cluster the map knows, sorted: those that own a
// shard and 0 .. Clusters-1 (a planned cluster may not have written its
// part yet).
func (m Map) ClusterIDs() []int {
	seen := map[int]bool{}
	var out []int
	add := func(c int) {
		if !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	for _, c := range m.Owners {
		add(c)
	}
	for c := 0; c < m.Clusters; c++ {
		add(c)
	}
	sort.Ints(out)
	return out
}

// Shards returns the mapped shards, sorted.
func (m Map) Shards() []int {
	out := make([]int, 0, len(m.Owners))
	for s := range m.Owners {
		out = append(out, s)
	}
	sort.Ints(out)
	return out
}

// Len is the number of hash fields m has when written: one per shard, plus
// shard_count and clusters when known. Comparing it with HLEN tells whether
// the stored map is complete.
func (m Map) Len() int {
	n := len(m.Owners)
	if m.ShardCount > 0 {
		n++
	}
	if m.Clusters > 0 {
		n++
	}
	return n
}

// fields is m as HSET arguments; unknown (zero) counts are left out.
func (m Map) fields() []any {
	out := make([]any, 0, 2*m.Len())
	if m.ShardCount > 0 {
		out = append(out, FieldShardCount, m.ShardCount)
	}
	if m.Clusters > 0 {
		out = append(out, FieldClusters, m.Clusters)
	}
	for _, s := range m.Shards() {
		out = append(out, strconv.Itoa(s), m.Owners[s])
	}
	return out
}

// Parse reads a map from the fields of an HGETALL of keyspace.ShardMap.
// Fields it does not know, and values that are not numbers, are ignored.
func Parse(h map[string]string) Map {
	m := Map{Owners: map[int]int{}}
	for k, v := range h {
		shard, err1 := strconv.Atoi(k)
		cl, err2 := strconv.Atoi(v)
		if err1 != nil || err2 != nil {
			continue // shard_count, clusters and any other metadata
		}
		m.Owners[shard] = cl
	}
	m.ShardCount, _ = strconv.Atoi(h[FieldShardCount])
	m.Clusters, _ = strconv.Atoi(h[FieldClusters])
	return m
}

// Load reads the shard map; a missing map is an empty Map, not an error.
func Load(ctx context.Context, rdb redis.Cmdable, ks keyspace.Keyspace) (Map, error) {
	h, err := rdb.HGetAll(ctx, ks.ShardMap()).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return Map{}, fmt.Errorf("shardmap: load: %w", err)
	}
	return Parse(h), nil
}

// Save replaces the stored map with m in one transaction (DEL, then HSET),
// so a reader never sees a mix of two layouts.
func Save(ctx context.Context, rdb redis.Cmdable, ks keyspace.Keyspace, m Map) error {
	_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.Del(ctx, ks.ShardMap())
		if f := m.fields(); len(f) > 0 {
			p.HSet(ctx, ks.ShardMap(), f...)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("shardmap: save: %w", err)
	}
	return nil
}

// Add writes m's fields into the stored map and leaves the others alone:
// a cluster adds its own shards, and a rewrite fills in what went missing.
// Zero counts are not written. On a pipeline the command's error arrives
// with Exec.
func Add(ctx context.Context, c redis.Cmdable, ks keyspace.Keyspace, m Map) *redis.IntCmd {
	return c.HSet(ctx, ks.ShardMap(), m.fields()...)
}

// Has reports whether the stored map maps shard (HEXISTS), for pipelined
// checks that the map is still whole.
func Has(ctx context.Context, c redis.Cmdable, ks keyspace.Keyspace, shard int) *redis.BoolCmd {
	return c.HExists(ctx, ks.ShardMap(), strconv.Itoa(shard))
}

// Fields counts the stored map's fields (HLEN), to compare with Map.Len.
func Fields(ctx context.Context, c redis.Cmdable, ks keyspace.Keyspace) *redis.IntCmd {
	return c.HLen(ctx, ks.ShardMap())
}

// ShardCountField reads the stored shard_count field (HGET), for pipelined
// checks; redis.Nil when the map has none.
func ShardCountField(ctx context.Context, c redis.Cmdable, ks keyspace.Keyspace) *redis.StringCmd {
	return c.HGet(ctx, ks.ShardMap(), FieldShardCount)
}

// ReadShardCount reads only the shard count: ErrNoShardCount when the map
// has none, an error when it is not a positive number.
func ReadShardCount(ctx context.Context, rdb redis.Cmdable, ks keyspace.Keyspace) (int, error) {
	v, err := rdb.HGet(ctx, ks.ShardMap(), FieldShardCount).Result()
	if errors.Is(err, redis.Nil) {
		return 0, ErrNoShardCount
	}
	if err != nil {
		return 0, fmt.Errorf("shardmap: read shard_count: %w", err)
	}
	n, err := strconv.Atoi(v)
	if err != nil || n <= 0 {
		return 0, fmt.Errorf("shardmap: bad shard_count %q", v)
	}
	return n, nil
}

// Owners reads the clusters of the given shards (HMGET); shards the map
// does not have are absent from the result.
func Owners(ctx context.Context, rdb redis.Cmdable, ks keyspace.Keyspace, shards []int) (map[int]int, error) {
	out := make(map[int]int, len(shards))
	if len(shards) == 0 {
		return out, nil
	}
	fields := make([]string, len(shards))
	for i, s := range shards {
		fields[i] = strconv.Itoa(s)
	}
	vals, err := rdb.HMGet(ctx, ks.ShardMap(), fields...).Result()
	if err != nil {
		return nil, fmt.Errorf("shardmap: owners: %w", err)
	}
	for i, s := range shards {
		if v, ok := vals[i].(string); ok {
			if c, err := strconv.Atoi(v); err == nil {
				out[s] = c
			}
		}
	}
	return out, nil
}

// Delete removes the shard map.
func Delete(ctx context.Context, c redis.Cmdable, ks keyspace.Keyspace) *redis.IntCmd {
	return c.Del(ctx, ks.ShardMap())
}
