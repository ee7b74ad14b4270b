package lifecycle_test

import (
	"context"
	"fmt"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/lifecycle"
)

func ExampleRead() {
	m := miniredis.NewMiniRedis()
	if err := m.Start(); err != nil {
		panic(err)
	}
	defer m.Close()
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer rdb.Close()
	ks := keyspace.MustNew("mybot")
	ctx := context.Background()

	_ = lifecycle.Publish(ctx, rdb, ks, lifecycle.ShardEvent(lifecycle.ShardResumed, 2, 9, ""))
	_ = lifecycle.Publish(ctx, rdb, ks, lifecycle.ClusterEvent(lifecycle.ClusterReady, 2, ""))

	cursor := ""
	for {
		evs, next, err := lifecycle.Read(ctx, rdb, ks, cursor, 100)
		if err != nil || len(evs) == 0 {
			break
		}
		for _, ev := range evs {
			fmt.Println(ev.Type, ev.Cluster, ev.Shard)
		}
		cursor = next
	}
	// Output:
	// shard_resumed 2 9
	// cluster_ready 2 -1
}
