package cache

import (
	"context"
	"sort"
	"strconv"
	"testing"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
)

// TestRebucketMovesShardRecords projects guilds over 2 shards by hand,
// rebuckets to 4 and back to 1, and checks every per-shard record against
// Discord's formula after each move.
func TestRebucketMovesShardRecords(t *testing.T) {
	m := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	ks := keyspace.MustNew("rb")
	ctx := context.Background()
	var ids []uint64
	for i := range 40 {
		ids = append(ids, uint64(i+1)<<22|uint64(i))
	}
	for i, id := range ids {
		s := shardOf(id, 2)
		sid := strconv.FormatUint(id, 10)
		rdb.SAdd(ctx, ks.ShardGuilds(s), sid)
		if i%5 == 0 {
			rdb.SAdd(ctx, ks.ShardUnavailable(s), sid)
		}
		rdb.HSet(ctx, ks.ShardCounts(s), sid, strconv.Itoa(i)+",1,2")
		rdb.HSet(ctx, ks.Guild(id), "name", "g"+sid, "shard", strconv.Itoa(s))
	}
	check := func(count int) {
		t.Helper()
		for s := range 4 {
			want := []string{}
			for _, id := range ids {
				if s < count && shardOf(id, count) == s {
					want = append(want, strconv.FormatUint(id, 10))
				}
			}
			got := rdb.SMembers(ctx, ks.ShardGuilds(s)).Val()
			sort.Strings(got)
			sort.Strings(want)
			if len(got) != len(want) {
				t.Fatalf("%d shards: shard %d holds %d guilds, want %d", count, s, len(got), len(want))
			}
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("%d shards: shard %d holds %v, want %v", count, s, got, want)
				}
			}
			if n := rdb.HLen(ctx, ks.ShardCounts(s)).Val(); n != int64(len(want)) {
				t.Errorf("%d shards: shard %d has %d counts, want %d", count, s, n, len(want))
			}
		}
		unav := 0
		for i, id := range ids {
			s := shardOf(id, count)
			sid := strconv.FormatUint(id, 10)
			if got := rdb.HGet(ctx, ks.Guild(id), "shard").Val(); got != strconv.Itoa(s) {
				t.Errorf("%d shards: guild %d says shard %s, want %d", count, id, got, s)
			}
			if got := rdb.HGet(ctx, ks.ShardCounts(s), sid).Val(); got != strconv.Itoa(i)+",1,2" {
				t.Errorf("%d shards: guild %d counts %q", count, id, got)
			}
			if rdb.SIsMember(ctx, ks.ShardUnavailable(s), sid).Val() {
				unav++
			}
			if rdb.HGet(ctx, ks.Guild(id), "name").Val() != "g"+sid {
				t.Errorf("guild %d lost its name", id)
			}
		}
		if unav != 8 {
			t.Errorf("%d shards: %d unavailable guilds, want 8", count, unav)
		}
	}
	rep, err := Rebucket(ctx, rdb, ks, 2, 4)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Guilds != 40 || rep.Moved == 0 {
		t.Errorf("report %+v", rep)
	}
	check(4)
	if _, err := Rebucket(ctx, rdb, ks, 4, 1); err != nil {
		t.Fatal(err)
	}
	check(1)
	if _, err := Rebucket(ctx, rdb, ks, 0, 1); err == nil {
		t.Error("a rebucket from 0 shards was accepted")
	}
}
