package lifecycle

import (
	"context"
	"testing"

	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/keyspace"
)

func TestLastReturnsTheNewestOldestFirst(t *testing.T) {
	_, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("last")
	ctx := context.Background()
	if evs, err := Last(ctx, rdb, ks, 3); err != nil || len(evs) != 0 {
		t.Fatalf("Last of no stream = %v, %v", evs, err)
	}
	for c := range 5 {
		if err := Publish(ctx, rdb, ks, ClusterEvent(ClusterReady, c, "")); err != nil {
			t.Fatal(err)
		}
	}
	evs, err := Last(ctx, rdb, ks, 3)
	if err != nil {
		t.Fatal(err)
	}
	if len(evs) != 3 || evs[0].Cluster != 2 || evs[2].Cluster != 4 || evs[0].ID == "" {
		t.Errorf("Last(3) = %+v, want clusters 2, 3, 4", evs)
	}
}
