package shardmap

import (
	"context"
	"errors"
	"reflect"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
)

func newRedis(t *testing.T) (*miniredis.Miniredis, redis.UniversalClient, keyspace.Keyspace) {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	return mr, rdb, keyspace.MustNew("test")
}

func TestSaveLoadRoundTrip(t *testing.T) {
	ctx := context.Background()
	mr, rdb, ks := newRedis(t)
	want := Map{ShardCount: 4, Clusters: 2, Owners: map[int]int{0: 0, 1: 0, 2: 1, 3: 1}}
	mr.HSet(ks.ShardMap(), "9", "7") // a leftover of an older layout: Save replaces it
	if err := Save(ctx, rdb, ks, want); err != nil {
		t.Fatal(err)
	}
	got, err := Load(ctx, rdb, ks)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Load = %+v, want %+v", got, want)
	}
	raw, err := rdb.HGetAll(ctx, "megane:test:shardmap").Result()
	if err != nil {
		t.Fatal(err)
	}
	wantRaw := map[string]string{"shard_count": "4", "clusters": "2", "0": "0", "1": "0", "2": "1", "3": "1"}
	if !reflect.DeepEqual(raw, wantRaw) {
		t.Fatalf("HGETALL = %v, want %v", raw, wantRaw)
	}
	if n := Fields(ctx, rdb, ks).Val(); n != int64(want.Len()) {
		t.Fatalf("Fields = %d, Len = %d", n, want.Len())
	}
}

func TestAddMerges(t *testing.T) {
	ctx := context.Background()
	_, rdb, ks := newRedis(t)
	// Two clusters each write their own part, with no cluster count.
	for _, part := range []Map{
		{ShardCount: 3, Owners: map[int]int{0: 0, 1: 0}},
		{ShardCount: 3, Owners: map[int]int{2: 1}},
	} {
		if err := Add(ctx, rdb, ks, part).Err(); err != nil {
			t.Fatal(err)
		}
	}
	raw := rdb.HGetAll(ctx, ks.ShardMap()).Val()
	wantRaw := map[string]string{"shard_count": "3", "0": "0", "1": "0", "2": "1"}
	if !reflect.DeepEqual(raw, wantRaw) {
		t.Fatalf("HGETALL = %v, want %v", raw, wantRaw)
	}
	if !Has(ctx, rdb, ks, 2).Val() || Has(ctx, rdb, ks, 3).Val() {
		t.Fatal("Has disagrees with the stored map")
	}
}

func TestLoadMissingAndForeignFields(t *testing.T) {
	ctx := context.Background()
	mr, rdb, ks := newRedis(t)
	m, err := Load(ctx, rdb, ks)
	if err != nil {
		t.Fatal(err)
	}
	if m.ShardCount != 0 || m.Clusters != 0 || len(m.Owners) != 0 {
		t.Fatalf("missing map loaded as %+v", m)
	}
	mr.HSet(ks.ShardMap(), "shard_count", "4", "clusters", "3", "0", "0", "1", "2", "x", "y", "2", "bad")
	m, err = Load(ctx, rdb, ks)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[int]int{0: 0, 1: 2}; !reflect.DeepEqual(m.Owners, want) {
		t.Fatalf("Owners = %v, want %v", m.Owners, want)
	}
	if got := m.ClusterIDs(); !reflect.DeepEqual(got, []int{0, 1, 2}) {
		t.Fatalf("ClusterIDs = %v (a planned cluster without shards counts too)", got)
	}
	if got := m.ClusterShards(1); got != nil {
		t.Fatalf("ClusterShards(1) = %v, want none", got)
	}
	if c, ok := m.Owner(1); !ok || c != 2 {
		t.Fatalf("Owner(1) = %d, %v", c, ok)
	}
	if _, ok := m.Owner(3); ok {
		t.Fatal("Owner(3) found an unmapped shard")
	}
}

func TestMapQueries(t *testing.T) {
	m := Map{ShardCount: 5, Owners: map[int]int{4: 1, 0: 0, 3: 1, 1: 0, 2: 0}}
	tests := []struct {
		name string
		got  []int
		want []int
	}{
		{"ClusterShards(0)", m.ClusterShards(0), []int{0, 1, 2}},
		{"ClusterShards(1)", m.ClusterShards(1), []int{3, 4}},
		{"ClusterIDs", m.ClusterIDs(), []int{0, 1}},
		{"Shards", m.Shards(), []int{0, 1, 2, 3, 4}},
	}
	for _, tt := range tests {
		if !reflect.DeepEqual(tt.got, tt.want) {
			t.Errorf("%s = %v, want %v", tt.name, tt.got, tt.want)
		}
	}
	if m.Len() != 6 {
		t.Errorf("Len = %d, want 6", m.Len())
	}
}

func TestReadShardCountAndOwners(t *testing.T) {
	ctx := context.Background()
	mr, rdb, ks := newRedis(t)
	if _, err := ReadShardCount(ctx, rdb, ks); !errors.Is(err, ErrNoShardCount) {
		t.Fatalf("ReadShardCount of no map: %v", err)
	}
	mr.HSet(ks.ShardMap(), "shard_count", "zero")
	if _, err := ReadShardCount(ctx, rdb, ks); err == nil || errors.Is(err, ErrNoShardCount) {
		t.Fatalf("ReadShardCount of a bad count: %v", err)
	}
	if err := Save(ctx, rdb, ks, Map{ShardCount: 2, Clusters: 1, Owners: map[int]int{0: 0, 1: 0}}); err != nil {
		t.Fatal(err)
	}
	if n, err := ReadShardCount(ctx, rdb, ks); err != nil || n != 2 {
		t.Fatalf("ReadShardCount = %d, %v", n, err)
	}
	got, err := Owners(ctx, rdb, ks, []int{1, 5, 0})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[int]int{0: 0, 1: 0}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Owners = %v, want %v", got, want)
	}
	if err := Delete(ctx, rdb, ks).Err(); err != nil {
		t.Fatal(err)
	}
	if mr.Exists(ks.ShardMap()) {
		t.Fatal("Delete left the map")
	}
}
