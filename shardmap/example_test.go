package shardmap_test

import (
	"context"
	"fmt"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/shardmap"
)

func Example() {
	m := miniredis.NewMiniRedis()
	if err := m.Start(); err != nil {
		panic(err)
	}
	defer m.Close()
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer rdb.Close()
	ctx, ks := context.Background(), keyspace.MustNew("mybot")

	// The launcher plans 4 shards on 2 clusters.
	plan := shardmap.Map{ShardCount: 4, Clusters: 2, Owners: map[int]int{0: 0, 1: 0, 2: 1, 3: 1}}
	if err := shardmap.Save(ctx, rdb, ks, plan); err != nil {
		panic(err)
	}

	// Any process reads it back.
	sm, err := shardmap.Load(ctx, rdb, ks)
	if err != nil {
		panic(err)
	}
	owner, _ := sm.Owner(3)
	fmt.Println("shard 3 runs on cluster", owner)
	fmt.Println("cluster 0 runs shards", sm.ClusterShards(0))
	// Output:
	// shard 3 runs on cluster 1
	// cluster 0 runs shards [0 1]
}
