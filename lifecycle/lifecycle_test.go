package lifecycle

import (
	"context"
	"testing"
	"time"

	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/internal/testwait"
	"github.com/megane-go/megane/keyspace"
)

func TestPublishRead(t *testing.T) {
	_, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("test")
	ctx := context.Background()
	at := time.UnixMilli(1_700_000_000_000)

	in := []Event{
		ClusterEvent(ClusterSpawned, 2, "pid 10"),
		ShardEvent(ShardReady, 2, 5, ""),
		ServiceEvent(ServiceReady, "twitch", ""),
	}
	for i := range in {
		in[i].At = at
		if err := Publish(ctx, rdb, ks, in[i]); err != nil {
			t.Fatal(err)
		}
	}

	got, last, err := Read(ctx, rdb, ks, "", 2)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || last != got[1].ID {
		t.Fatalf("Read = %+v, last %q", got, last)
	}
	for i := range got {
		want := in[i]
		want.ID = got[i].ID
		if !got[i].At.Equal(at) {
			t.Fatalf("event %d At = %s", i, got[i].At)
		}
		got[i].At = at
		if got[i] != want {
			t.Fatalf("event %d = %+v, want %+v", i, got[i], want)
		}
	}

	rest, last2, err := Read(ctx, rdb, ks, last, 10)
	if err != nil {
		t.Fatal(err)
	}
	if len(rest) != 1 || rest[0].Service != "twitch" || rest[0].Cluster != -1 || rest[0].Shard != -1 {
		t.Fatalf("rest = %+v", rest)
	}
	none, last3, err := Read(ctx, rdb, ks, last2, 10)
	if err != nil || len(none) != 0 || last3 != last2 {
		t.Fatalf("read past end = %+v, %q, %v", none, last3, err)
	}
}

func TestFollow(t *testing.T) {
	_, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("test")
	ctx := context.Background()

	if err := Publish(ctx, rdb, ks, ClusterEvent(ClusterSpawned, 1, "")); err != nil {
		t.Fatal(err)
	}
	evs, cursor, err := Follow(ctx, rdb, ks, "$", 10, 50*time.Millisecond)
	if err != nil || len(evs) != 0 {
		t.Fatalf("quiet Follow = %+v, %v", evs, err)
	}
	if cursor == "$" {
		t.Fatal("Follow returned \"$\" as the cursor; events between calls would be missed")
	}
	// Published between two calls: still seen.
	if err := Publish(ctx, rdb, ks, ClusterEvent(ClusterReady, 1, "")); err != nil {
		t.Fatal(err)
	}
	evs, cursor, err = Follow(ctx, rdb, ks, cursor, 10, 50*time.Millisecond)
	if err != nil || len(evs) != 1 || evs[0].Type != ClusterReady {
		t.Fatalf("Follow after a quiet call = %+v, %v", evs, err)
	}
	done := make(chan []Event, 1)
	go func() {
		evs, _, err := Follow(ctx, rdb, ks, cursor, 10, 5*time.Second)
		if err != nil {
			t.Error(err)
		}
		done <- evs
	}()
	// Publish until the follower has seen it, since it may subscribe late.
	testwait.For(t, 5*time.Second, "Follow to return the event", func() bool {
		if err := Publish(ctx, rdb, ks, ClusterEvent(ClusterReady, 1, "")); err != nil {
			t.Fatal(err)
		}
		select {
		case evs = <-done:
			return true
		case <-time.After(100 * time.Millisecond):
			return false
		}
	})
	if len(evs) == 0 || evs[0].Type != ClusterReady || evs[0].Cluster != 1 {
		t.Fatalf("Follow = %+v", evs)
	}
}
