package store_test

import (
	"context"
	"fmt"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/store"
)

func Example() {
	m, _ := miniredis.Run()
	defer m.Close()
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer rdb.Close()
	ctx := context.Background()

	s := store.New(rdb, keyspace.MustNew("example"))
	prefixes := store.NewTyped[string](s.Bucket("prefixes"))
	_ = prefixes.Set(ctx, "guild:1", "")   // empty is a value, not a deletion
	p, err := prefixes.Get(ctx, "guild:1") // redis-cli: HGET megane:example:store:prefixes guild:1
	fmt.Printf("%q %v\n", p, err)

	counters := s.Bucket("counters")
	n, _ := counters.Incr(ctx, "commands", 1)
	swapped, _ := counters.CompareAndSet(ctx, "commands", 1, 10)
	fmt.Println(n, swapped)
	// Output:
	// "" <nil>
	// 1 true
}
