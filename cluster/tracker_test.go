package cluster

import (
	"testing"

	"github.com/disgoorg/snowflake/v2"

	"github.com/megane-go/megane/lifecycle"
	"github.com/megane-go/megane/sessions"
)

// The tracker decides which sequence is safe to resume from; these tests
// drive it the way the gateway handler does.

// taken collects the lifecycle events of every flush a test makes.
var taken []lifecycle.Event

func sessionOf(t *testing.T, tr *tracker, final bool, shard int) (sessions.State, bool) {
	t.Helper()
	b := tr.take(final)
	tr.done(b)
	taken = append(taken, b.events...)
	s, ok := b.sessions[shard]
	return s, ok
}

func TestTrackerSavesOnlyHandledSequences(t *testing.T) {
	tr := newTracker(0, 1, []int{0}, nil)

	// READY (seq 1): raw, then its listeners, then the bookkeeping.
	tr.rawSeen(0, 1)
	if _, ok := sessionOf(t, tr, false, 0); ok {
		t.Fatal("a session was saved before READY was handled")
	}
	tr.readyEvent(0, 1, "s1", "ws://resume", guildIDs(3))
	if s, ok := sessionOf(t, tr, false, 0); !ok || s.SessionID != "s1" || s.Sequence != 1 || s.ResumeURL != "ws://resume" || s.ShardCount != 1 {
		t.Fatalf("after READY: %+v %v", s, ok)
	}

	// seq 2 arrives; its listener is still running.
	tr.begin(0)
	tr.rawSeen(0, 2)
	if s, ok := sessionOf(t, tr, false, 0); ok {
		t.Fatalf("seq 2 saved while its listener runs: %+v", s)
	}
	if s, ok := sessionOf(t, tr, true, 0); ok {
		t.Fatalf("final save took seq 2 while its listener runs: %+v", s)
	}
	tr.handled(0, 2)
	tr.end(0)
	if s, _ := sessionOf(t, tr, false, 0); s.Sequence != 2 {
		t.Fatalf("after seq 2 handled: %+v", s)
	}

	// seq 3 has an event type disgo does not decode: only the raw path sees
	// it. It counts as handled once seq 4 arrives, or at the final save.
	tr.rawSeen(0, 3)
	if _, ok := sessionOf(t, tr, false, 0); ok {
		t.Fatal("raw-only seq 3 saved before the next event")
	}
	if s, _ := sessionOf(t, tr, true, 0); s.Sequence != 3 {
		t.Fatalf("final save = %+v, want seq 3", s)
	}
	tr.rawSeen(0, 4)
	if s, _ := sessionOf(t, tr, false, 0); s.Sequence != 3 {
		t.Fatalf("after seq 4 arrived: %+v, want 3", s)
	}

	// A new session (re-IDENTIFY) replaces the old one and restarts at 1.
	tr.rawSeen(0, 1)
	tr.readyEvent(0, 1, "s2", "ws://resume2", guildIDs(3))
	if s, _ := sessionOf(t, tr, false, 0); s.SessionID != "s2" || s.Sequence != 1 {
		t.Fatalf("after the second READY: %+v", s)
	}
}

func TestTrackerResumeAndReadiness(t *testing.T) {
	taken = nil
	saved := map[int]sessions.State{1: {SessionID: "s", Sequence: 40, ResumeURL: "ws://r"}}
	tr := newTracker(7, 2, []int{0, 1}, saved)
	if _, ok := sessionOf(t, tr, false, 1); ok {
		t.Fatal("a loaded session was written back unchanged")
	}

	tr.rawSeen(0, 1)
	tr.readyEvent(0, 1, "a", "ws://r0", guildIDs(2))
	select {
	case <-tr.ready:
		t.Fatal("ready with one shard still resuming")
	default:
	}
	// Replayed events, then RESUMED.
	for seq := 41; seq <= 43; seq++ {
		tr.rawSeen(1, seq)
		tr.handled(1, seq)
	}
	tr.rawSeen(1, 44)
	tr.handled(1, 44)
	tr.resumedEvent(1)
	select {
	case <-tr.ready:
	default:
		t.Fatal("not ready after every shard was READY or RESUMED")
	}
	if s, _ := sessionOf(t, tr, false, 1); s.SessionID != "s" || s.Sequence != 44 {
		t.Fatalf("resumed session = %+v", s)
	}

	tr.disconnected(1, false)
	tr.disconnected(1, false) // reported once
	tr.resumedEvent(1)
	tr.stop()
	tr.disconnected(0, false) // expected while stopping: no event
	b := tr.take(true)
	var types []lifecycle.Type
	for _, ev := range append(taken, b.events...) {
		if ev.Cluster != 7 {
			t.Fatalf("event of cluster %d", ev.Cluster)
		}
		types = append(types, ev.Type)
	}
	want := []lifecycle.Type{lifecycle.ShardReady, lifecycle.ShardResumed, lifecycle.ShardDisconnected,
		lifecycle.ShardResumed, lifecycle.ShardDisconnected, lifecycle.ShardDisconnected}
	if len(types) != len(want) {
		t.Fatalf("events %v, want %v", types, want)
	}
	for i := range want {
		if types[i] != want[i] {
			t.Fatalf("events %v, want %v", types, want)
		}
	}
	if b.statuses[0].status != statusStopped || b.statuses[1].status != statusStopped {
		t.Fatalf("statuses after stop: %+v", b.statuses)
	}
}

func TestTrackerFailedFlushIsRetried(t *testing.T) {
	tr := newTracker(0, 1, []int{0}, nil)
	tr.rawSeen(0, 1)
	tr.readyEvent(0, 1, "s", "ws://r", guildIDs(0))
	b := tr.take(false)
	tr.failed(b)
	again := tr.take(false)
	if len(again.sessions) != 1 || len(again.events) != 1 || len(again.statuses) != 1 {
		t.Fatalf("after a failed flush: %+v", again)
	}
	tr.done(again)
	if b := tr.take(false); !b.empty() {
		t.Fatalf("after a successful flush: %+v", b)
	}
}

// guildIDs returns n guild ids, 1..n.
func guildIDs(n int) []snowflake.ID {
	ids := make([]snowflake.ID, n)
	for i := range ids {
		ids[i] = snowflake.ID(i + 1)
	}
	return ids
}

func TestTrackerGuildCount(t *testing.T) {
	count := func(tr *tracker, shard int) int64 { return tr.guildCounts()[shard] }
	tr := newTracker(0, 1, []int{0}, nil)
	if n := count(tr, 0); n != -1 {
		t.Fatalf("before READY: %d, want -1 (unknown)", n)
	}
	tr.readyEvent(0, 1, "s", "ws://r", guildIDs(3))
	seq := 1
	step := func(g snowflake.ID, c guildChange, want int64) {
		t.Helper()
		seq++
		tr.rawSeen(0, seq)
		tr.guildEvent(0, seq, g, c)
		if n := count(tr, 0); n != want {
			t.Fatalf("seq %d: %d guilds, want %d", seq, n, want)
		}
		// The saved session carries the count at its sequence.
		if s, ok := sessionOf(t, tr, false, 0); !ok || s.Sequence != seq || int64(s.Guilds) != want {
			t.Fatalf("seq %d: session %+v, want %d guilds", seq, s, want)
		}
	}
	step(1, guildCreated, 3)     // READY's unavailable guilds arrive: no join
	step(2, guildCreated, 3)     //
	step(3, guildCreated, 3)     //
	step(9, guildCreated, 4)     // a join
	step(2, guildUnavailable, 4) // an outage
	step(2, guildCreated, 4)     // ... and its end
	step(1, guildRemoved, 3)     // a leave
	step(0, guildNone, 3)        // any other event
	// A replayed event (seq not ahead) changes nothing.
	tr.guildEvent(0, seq, 10, guildCreated)
	if n := count(tr, 0); n != 3 {
		t.Fatalf("a replayed GUILD_CREATE counted: %d", n)
	}

	// A resumed shard starts from its session's count.
	saved := map[int]sessions.State{0: {SessionID: "s", Sequence: 40, ResumeURL: "ws://r", Guilds: 3}, 1: {SessionID: "t", Sequence: 9, ResumeURL: "ws://r", Guilds: -1}}
	tr = newTracker(0, 2, []int{0, 1}, saved)
	if n := tr.guildCounts(); n[0] != 3 || n[1] != -1 {
		t.Fatalf("resumed: %v, want 3 and -1 (a session without a count)", n)
	}
	tr.guildEvent(0, 41, 77, guildCreated)
	tr.guildEvent(1, 10, 77, guildCreated)
	if n := tr.guildCounts(); n[0] != 4 || n[1] != -1 {
		t.Fatalf("after a join: %v, want 4 and -1", n)
	}
}
