package lifecycle

import (
	"context"
	"fmt"
	"slices"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
)

// Last returns the newest count events (at most), oldest first: what a
// status page shows as "recent".
func Last(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace, count int) ([]Event, error) {
	if count <= 0 {
		count = 20
	}
	msgs, err := rdb.XRevRangeN(ctx, ks.Events(), "+", "-", int64(count)).Result()
	if err != nil {
		return nil, fmt.Errorf("lifecycle: last: %w", err)
	}
	slices.Reverse(msgs)
	evs, _, err := decodeAll(msgs, "")
	return evs, err
}
