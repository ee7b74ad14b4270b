package identify_test

import (
	"context"
	"fmt"

	"github.com/alicebob/miniredis/v2"
	"github.com/disgoorg/disgo/sharding"
	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/identify"
	"github.com/megane-go/megane/keyspace"
)

func ExampleLimiter() {
	m := miniredis.NewMiniRedis()
	if err := m.Start(); err != nil {
		panic(err)
	}
	defer m.Close()
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer rdb.Close()
	ks := keyspace.MustNew("mybot")
	ctx := context.Background()

	// Every process of the bot builds its limiter on the same Redis and
	// hands it to disgo's shard manager.
	limiter := identify.NewLimiter(rdb, ks, 16)
	_ = sharding.WithIdentifyRateLimiter(limiter)

	// disgo calls Wait before an IDENTIFY and Unlock after READY.
	if err := limiter.Wait(ctx, 17); err != nil {
		panic(err)
	}
	limiter.Unlock(17)
	fmt.Println("bucket", limiter.Bucket(17), "held for", m.TTL(ks.IdentifyBucket(1)))
	// Output: bucket 1 held for 5.1s
}

func ExampleCheckBudget() {
	m := miniredis.NewMiniRedis()
	if err := m.Start(); err != nil {
		panic(err)
	}
	defer m.Close()
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer rdb.Close()
	ks := keyspace.MustNew("mybot")
	ctx := context.Background()

	_ = identify.SaveGatewayInfo(ctx, rdb, ks, identify.GatewayInfo{Shards: 8, MaxConcurrency: 1, Total: 1000, Remaining: 10})
	fmt.Println(identify.CheckBudget(ctx, rdb, ks, 8, 2))
	err := identify.CheckBudget(ctx, rdb, ks, 9, 2)
	fmt.Println(err != nil)
	// Output:
	// <nil>
	// true
}
