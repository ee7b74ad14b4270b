package sessions

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/keyspace"
)

var ks = keyspace.MustNew("test")

func setup(t *testing.T) (*miniredis.Miniredis, redis.UniversalClient) {
	t.Helper()
	return testredis.Mini(t)
}

func load1(t *testing.T, rdb redis.UniversalClient, shard int) (State, bool) {
	t.Helper()
	m, err := Load(context.Background(), rdb, ks, []int{shard})
	if err != nil {
		t.Fatal(err)
	}
	s, ok := m[shard]
	return s, ok
}

func TestSaveSequenceOnlyMovesForward(t *testing.T) {
	_, rdb := setup(t)
	ctx := context.Background()
	steps := []struct {
		name    string
		save    State
		wantSID string
		wantSeq int
		wantURL string
	}{
		{"first", State{SessionID: "a", Sequence: 10, ResumeURL: "ws://r1"}, "a", 10, "ws://r1"},
		{"forward", State{SessionID: "a", Sequence: 12}, "a", 12, "ws://r1"},
		{"behind is ignored", State{SessionID: "a", Sequence: 11, ResumeURL: "ws://stale"}, "a", 12, "ws://r1"},
		{"equal is kept", State{SessionID: "a", Sequence: 12, ResumeURL: "ws://r2"}, "a", 12, "ws://r2"},
		{"new session replaces even with a lower seq", State{SessionID: "b", Sequence: 1, ResumeURL: "ws://r3"}, "b", 1, "ws://r3"},
		{"old session's late write replaces too", State{SessionID: "a", Sequence: 40, ResumeURL: "ws://r1"}, "a", 40, "ws://r1"},
	}
	for _, st := range steps {
		if err := Save(ctx, rdb, ks, 3, st.save); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		got, ok := load1(t, rdb, 3)
		if !ok || got.SessionID != st.wantSID || got.Sequence != st.wantSeq || got.ResumeURL != st.wantURL {
			t.Fatalf("%s: got %+v (ok=%v), want %s/%d/%s", st.name, got, ok, st.wantSID, st.wantSeq, st.wantURL)
		}
	}
	if err := Save(ctx, rdb, ks, 3, State{Sequence: 5}); err == nil {
		t.Fatal("Save accepted an empty session id")
	}
}

func TestLoadOnlyCompleteStates(t *testing.T) {
	m, rdb := setup(t)
	ctx := context.Background()
	at := time.UnixMilli(1_700_000_000_000)
	all := map[int]State{
		0: {SessionID: "s0", Sequence: 5, ResumeURL: "ws://r", ShardCount: 16, UpdatedAt: at},
		1: {SessionID: "s1", Sequence: 0, ResumeURL: "ws://r"}, // disgo would IDENTIFY
		2: {SessionID: "s2", Sequence: 7},                      // no resume url
		3: {},                                                  // skipped by SaveAll
	}
	if err := SaveAll(ctx, rdb, ks, all); err != nil {
		t.Fatal(err)
	}
	if m.Exists(ks.ShardSession(3)) {
		t.Fatal("SaveAll wrote an empty state")
	}
	got, err := Load(ctx, rdb, ks, []int{0, 1, 2, 3, 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 {
		t.Fatalf("Load = %+v, want only shard 0", got)
	}
	if s := got[0]; s.SessionID != "s0" || s.Sequence != 5 || s.ResumeURL != "ws://r" || s.ShardCount != 16 || !s.UpdatedAt.Equal(at) {
		t.Fatalf("shard 0 = %+v", s)
	}
	// The layout is what redis-cli users see.
	if v := m.HGet(ks.ShardSession(0), "seq"); v != "5" {
		t.Fatalf("seq field = %q", v)
	}
	if v := m.HGet(ks.ShardSession(0), "updated_at"); v != "1700000000000" {
		t.Fatalf("updated_at field = %q", v)
	}
}

func TestSaveAllForwardOnly(t *testing.T) {
	_, rdb := setup(t)
	ctx := context.Background()
	if err := SaveAll(ctx, rdb, ks, map[int]State{0: {SessionID: "a", Sequence: 9, ResumeURL: "ws://r"}}); err != nil {
		t.Fatal(err)
	}
	if err := SaveAll(ctx, rdb, ks, map[int]State{0: {SessionID: "a", Sequence: 3, ResumeURL: "ws://r"}}); err != nil {
		t.Fatal(err)
	}
	if s, _ := load1(t, rdb, 0); s.Sequence != 9 {
		t.Fatalf("seq = %d, want 9", s.Sequence)
	}
}

func TestDelete(t *testing.T) {
	_, rdb := setup(t)
	ctx := context.Background()
	if err := Save(ctx, rdb, ks, 1, State{SessionID: "a", Sequence: 2, ResumeURL: "ws://r"}); err != nil {
		t.Fatal(err)
	}
	if err := Delete(ctx, rdb, ks, 1); err != nil {
		t.Fatal(err)
	}
	if _, ok := load1(t, rdb, 1); ok {
		t.Fatal("session survived Delete")
	}
}

func TestGuildCountMovesWithTheSequence(t *testing.T) {
	m, rdb := setup(t)
	ctx := context.Background()
	load := func() State {
		t.Helper()
		got, err := Load(ctx, rdb, ks, []int{0})
		if err != nil {
			t.Fatal(err)
		}
		return got[0]
	}
	for _, st := range []struct {
		name string
		save State
		want int
	}{
		{"new session", State{SessionID: "a", Sequence: 5, ResumeURL: "ws://r", Guilds: 12}, 12},
		{"forward", State{SessionID: "a", Sequence: 6, Guilds: 13}, 13},
		{"behind: ignored", State{SessionID: "a", Sequence: 4, Guilds: 99}, 13},
		{"unknown drops it", State{SessionID: "a", Sequence: 7, Guilds: -1}, -1},
		{"a new session without a count", State{SessionID: "b", Sequence: 1, ResumeURL: "ws://r", Guilds: -1}, -1},
		{"zero is a count", State{SessionID: "b", Sequence: 2, Guilds: 0}, 0},
	} {
		if err := Save(ctx, rdb, ks, 0, st.save); err != nil {
			t.Fatal(err)
		}
		if got := load(); got.Guilds != st.want {
			t.Fatalf("%s: Guilds %d, want %d (hash field %q)", st.name, got.Guilds, st.want, m.HGet(ks.ShardSession(0), "guilds"))
		}
	}
}

// TestFencing covers the stale owner: once a newer owner raised the fence,
// the older token's saves fail with ErrFenced and leave the session alone,
// on miniredis and on a real Redis.
func TestFencing(t *testing.T) {
	_, mini := setup(t)
	real, rks := testredis.Real(t)
	for _, b := range []struct {
		name string
		rdb  redis.UniversalClient
		ks   keyspace.Keyspace
	}{{"miniredis", mini, ks}, {"redis-server", real, rks}} {
		t.Run(b.name, func(t *testing.T) {
			ctx := context.Background()
			rdb, ks := b.rdb, b.ks
			old := State{SessionID: "a", Sequence: 10, ResumeURL: "ws://r", Fence: 1}
			if err := Save(ctx, rdb, ks, 0, old); err != nil {
				t.Fatal(err)
			}
			if err := Fence(ctx, rdb, ks, []int{0, 1}, 2); err != nil {
				t.Fatal(err)
			}
			old.Sequence = 11
			if err := Save(ctx, rdb, ks, 0, old); !IsFenced(err) || !errors.Is(err, ErrFenced) {
				t.Fatalf("stale Save: %v, want ErrFenced", err)
			}
			if err := SaveAll(ctx, rdb, ks, map[int]State{0: old}); !IsFenced(err) {
				t.Fatalf("stale SaveAll: %v, want fenced", err)
			}
			if err := Fence(ctx, rdb, ks, []int{0}, 1); !errors.Is(err, ErrFenced) {
				t.Fatalf("lowering the fence: %v, want ErrFenced", err)
			}
			got, ok := load1ks(t, rdb, ks, 0)
			if !ok || got.Sequence != 10 || got.Fence != 2 {
				t.Fatalf("after stale writes: %+v", got)
			}
			// The new owner saves, also a new session, and the fence stays.
			if err := Save(ctx, rdb, ks, 0, State{SessionID: "b", Sequence: 1, ResumeURL: "ws://r", Fence: 2}); err != nil {
				t.Fatal(err)
			}
			if got, _ := load1ks(t, rdb, ks, 0); got.SessionID != "b" || got.Fence != 2 {
				t.Fatalf("new owner's session: %+v", got)
			}
			if err := ClearFences(ctx, rdb, ks, []int{0, 1}); err != nil {
				t.Fatal(err)
			}
			if err := Save(ctx, rdb, ks, 0, State{SessionID: "b", Sequence: 2, ResumeURL: "ws://r"}); err != nil {
				t.Fatalf("unfenced save after ClearFences: %v", err)
			}
		})
	}
}

func load1ks(t *testing.T, rdb redis.UniversalClient, ks keyspace.Keyspace, shard int) (State, bool) {
	t.Helper()
	m, err := Load(context.Background(), rdb, ks, []int{shard})
	if err != nil {
		t.Fatal(err)
	}
	s, ok := m[shard]
	return s, ok
}
