package launcher

import (
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/lifecycle"
)

// TestServiceEventDetail: every service event names its copy the same way,
// copy 0 included, with no separator left dangling when the event itself
// has no detail.
func TestServiceEventDetail(t *testing.T) {
	_, rdb := testredis.Mini(t)
	got := make(chan lifecycle.Event, 16)
	l := &Launcher{log: slog.New(slog.NewTextHandler(io.Discard, nil)), rdb: rdb, ks: keyspace.MustNew("ev")}
	l.sink = newSink(l.rdb, l.ks, func(ev lifecycle.Event) { got <- ev }, l.log)
	defer l.sink.close()

	for _, tc := range []struct {
		copyN  int
		kind   evKind
		detail string
		want   lifecycle.Event
	}{
		{0, evReady, "", lifecycle.ServiceEvent(lifecycle.ServiceReady, "stats", "copy 0")},
		{1, evReady, "", lifecycle.ServiceEvent(lifecycle.ServiceReady, "stats", "copy 1")},
		{0, evSpawned, "pid 42", lifecycle.ServiceEvent(lifecycle.ServiceSpawned, "stats", "copy 0; pid 42")},
		{2, evExited, "exit status 1", lifecycle.ServiceEvent(lifecycle.ServiceExited, "stats", "copy 2; exit status 1")},
		{1, evGaveUp, "gave up", lifecycle.ServiceEvent(lifecycle.ServiceExited, "stats", "copy 1; gave up")},
	} {
		p := newProc(l, kindService)
		p.service, p.copy = "stats", tc.copyN
		p.event(tc.kind, tc.detail)
		select {
		case ev := <-got:
			ev.At = time.Time{}
			if ev != tc.want {
				t.Errorf("copy %d, event %d, detail %q: got %+v, want %+v", tc.copyN, tc.kind, tc.detail, ev, tc.want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("copy %d, event %d: no event delivered", tc.copyN, tc.kind)
		}
	}
}
