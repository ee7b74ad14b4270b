package redisipc

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/internal/testwait"
	"github.com/megane-go/megane/keyspace"
)

func TestGroupSharesLoad(t *testing.T) {
	_, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("unit")
	var counts [3]atomic.Int64
	for i := range counts {
		o := fastOpts(rdb, ks, "service:work")
		o.Group = true
		n := newNode(t, o)
		n.Handle("job", func(ctx context.Context, r *Request) ([]byte, error) {
			counts[i].Add(1)
			time.Sleep(time.Millisecond) // let the other copies get a share
			return r.Payload, nil
		})
	}
	cli := newNode(t, fastOpts(rdb, ks, "cli:a"))
	ctx := ctxT(t, 20*time.Second)
	// Rounds of 100 concurrent calls until every copy has had a share: which
	// copy reads a batch is up to the scheduler, so one round may go to one
	// or two copies, but not round after round.
	sent := 0
	shared := func() bool {
		for i := range counts {
			if counts[i].Load() == 0 {
				return false
			}
		}
		return true
	}
	for round := 0; round < 50 && !shared(); round++ {
		var wg sync.WaitGroup
		for range 100 {
			want := fmt.Sprint(sent)
			sent++
			wg.Add(1)
			go func() {
				defer wg.Done()
				if out, err := cli.Call(ctx, "service:work", "job", []byte(want)); err != nil || string(out) != want {
					t.Errorf("call %s = %q, %v", want, out, err)
				}
			}()
		}
		wg.Wait()
	}
	var total int64
	for i := range counts {
		c := counts[i].Load()
		total += c
		if c == 0 {
			t.Errorf("copy %d handled nothing in %d calls", i, sent)
		}
	}
	if total != int64(sent) {
		t.Fatalf("handled %d in all, want %d (each exactly once)", total, sent)
	}
	// Everything gets acknowledged. An ack travels in the pipeline right
	// behind its reply, so a caller may see the reply first: wait for it.
	testwait.For(t, 5*time.Second, "every entry to be acknowledged", func() bool {
		return rdb.XPending(ctx, ks.Inbox("service:work"), ks.InboxGroup()).Val().Count == 0
	})
}

// A copy that stops acknowledging (it died, or hangs without refreshing its
// lease) loses its pending requests to a live copy, which answers them.
func TestReclaimFromSilentCopy(t *testing.T) {
	_, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("unit")
	release := make(chan struct{})
	defer close(release)
	entered := make(chan struct{}, 10)

	stuck := fastOpts(rdb, ks, "service:work")
	stuck.Group, stuck.ClaimIdle = true, time.Hour // never refreshes its leases in this test
	sn := newNode(t, stuck)
	sn.Handle("job", func(ctx context.Context, r *Request) ([]byte, error) {
		entered <- struct{}{}
		<-release
		return []byte("stuck"), nil
	})
	cli := newNode(t, fastOpts(rdb, ks, "cli:a"))
	ctx := ctxT(t, 10*time.Second)

	type res struct {
		out []byte
		err error
	}
	results := make(chan res, 3)
	for range 3 {
		go func() {
			out, err := cli.Call(ctx, "service:work", "job", nil)
			results <- res{out, err}
		}()
	}
	for range 3 {
		select {
		case <-entered:
		case <-ctx.Done():
			t.Fatal("stuck copy never got the requests")
		}
	}

	live := fastOpts(rdb, ks, "service:work")
	live.Group, live.ClaimIdle = true, 300*time.Millisecond
	ln := newNode(t, live)
	ln.Handle("job", func(ctx context.Context, r *Request) ([]byte, error) { return []byte("live"), nil })
	for range 3 {
		r := <-results
		if r.err != nil || string(r.out) != "live" {
			t.Fatalf("call = %q, %v; want the live copy's answer", r.out, r.err)
		}
	}
}

func TestExpiredRequestsAreDropped(t *testing.T) {
	_, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("unit")
	var ran atomic.Int32
	svc := newNode(t, fastOpts(rdb, ks, "cluster:0"))
	svc.Handle("x", func(ctx context.Context, r *Request) ([]byte, error) { ran.Add(1); return nil, nil })
	cli := newNode(t, fastOpts(rdb, ks, "cli:a"))
	ctx := ctxT(t, 5*time.Second)

	old := envelope{Kind: kindRequest, Deadline: time.Now().Add(-time.Second).UnixMilli(), ID: "1", Op: "x",
		From: "cli:a", Instance: cli.Instance(), To: "cluster:0", ReplyTo: cli.Instance()}
	rdb.XAdd(ctx, &redis.XAddArgs{Stream: ks.Inbox("cluster:0"), Values: []any{fieldMsg, old.encode()}})
	if _, err := cli.Call(ctx, "cluster:0", "x", nil); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 2*time.Second, "the expired request to be dropped", func() bool { return svc.dropped.Load() == 1 })
	if ran.Load() != 1 {
		t.Fatalf("handler ran %d times, want 1 (the live call only)", ran.Load())
	}
}

// Malformed, unknown-op and oversized messages are answered with an error
// or dead-lettered with the reason; the node and its neighbours carry on.
func TestBadMessages(t *testing.T) {
	for _, group := range []bool{false, true} {
		t.Run(fmt.Sprintf("group=%v", group), func(t *testing.T) {
			_, rdb := testredis.Mini(t)
			ks := keyspace.MustNew("unit")
			so := fastOpts(rdb, ks, "service:s")
			so.Group, so.MaxPayload = group, 100
			svc := newNode(t, so)
			svc.Handle("echo", echo)
			cli := newNode(t, fastOpts(rdb, ks, "cli:a"))
			ctx := ctxT(t, 5*time.Second)
			inbox := ks.Inbox("service:s")

			bad := [][]any{
				{fieldMsg, "garbage"},
				{"other", "field"},
				{fieldMsg, []byte{envelopeVersion + 1, 1, 0, 0}},
				{fieldMsg, (&envelope{Kind: kindReply, ID: "9"}).encode()},
				{fieldMsg, (&envelope{Kind: kindRequest, ID: "8", Op: "echo"}).encode()}, // no reply-to
			}
			for _, v := range bad {
				if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: inbox, Values: v}).Err(); err != nil {
					t.Fatal(err)
				}
			}
			if err := cli.Send(ctx, "service:s", "nope", nil); err != nil {
				t.Fatal(err)
			}
			// The neighbour request right behind them is served.
			if out, err := cli.Call(ctx, "service:s", "echo", []byte("ok")); err != nil || string(out) != "ok" {
				t.Fatalf("echo = %q, %v", out, err)
			}
			if _, err := cli.Call(ctx, "service:s", "nope", nil); !errors.Is(err, ErrUnknownOp) {
				t.Fatalf("unknown op: %v", err)
			}
			_, err := cli.Call(ctx, "service:s", "echo", make([]byte, 101))
			if !errors.Is(err, ErrPayloadTooLarge) {
				t.Fatalf("oversized: %v, want ErrPayloadTooLarge from the receiver", err)
			}
			want := len(bad) + 1
			testwait.For(t, 2*time.Second, fmt.Sprintf("%d dead letters", want), func() bool { return rdb.XLen(ctx, ks.DeadLetter()).Val() == int64(want) })
			dl := rdb.XRange(ctx, ks.DeadLetter(), "-", "+").Val()
			for _, m := range dl {
				if m.Values["reason"] == "" || m.Values["stream"] != inbox {
					t.Errorf("dead letter without reason or stream: %v", m.Values)
				}
			}
			if group {
				testwait.For(t, 2*time.Second, "bad entries to be acknowledged", func() bool {
					return rdb.XPending(ctx, inbox, ks.InboxGroup()).Val().Count == 0
				})
			}
		})
	}
}

func TestCloseFailsWaitingCalls(t *testing.T) {
	_, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("unit")
	svc := newNode(t, fastOpts(rdb, ks, "cluster:0"))
	block := make(chan struct{})
	defer close(block)
	svc.Handle("wait", func(ctx context.Context, r *Request) ([]byte, error) {
		select {
		case <-block:
		case <-ctx.Done():
		}
		return nil, nil
	})
	ctx := ctxT(t, 5*time.Second)
	cli, err := New(ctx, fastOpts(rdb, ks, "cli:a"))
	if err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := cli.Call(ctx, "cluster:0", "wait", nil)
		errc <- err
	}()
	testwait.For(t, 2*time.Second, "the call to arrive", func() bool { return len(svc.sem) == 1 })
	if err := cli.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-errc; !errors.Is(err, ErrClosed) {
		t.Fatalf("waiting call: %v, want ErrClosed", err)
	}
	if _, err := cli.Call(ctx, "cluster:0", "wait", nil); !errors.Is(err, ErrClosed) {
		t.Fatalf("call after Close: %v, want ErrClosed", err)
	}
	// Close removed the registration and the reply stream.
	if rdb.Exists(ctx, ks.Node(cli.Instance()), ks.Replies(cli.Instance())).Val() != 0 {
		t.Fatal("Close left keys behind")
	}
}

func TestLiveNodesAndHold(t *testing.T) {
	_, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("unit")
	ctx := ctxT(t, 5*time.Second)
	newNode(t, fastOpts(rdb, ks, "cluster:0"))
	held := fastOpts(rdb, ks, "service:s")
	held.Hold, held.Group = true, true
	hn := newNode(t, held)
	hn.Handle("x", echo)
	cli := newNode(t, fastOpts(rdb, ks, "cli:a"))

	addrs := func() []string {
		nodes, err := LiveNodes(ctx, rdb, ks)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, n := range nodes {
			out = append(out, n.Addr)
		}
		return out
	}
	if got := fmt.Sprint(addrs()); got != "[cli:a cluster:0]" {
		t.Fatalf("LiveNodes = %s", got)
	}
	if _, err := cli.Call(ctx, "service:s", "x", nil); !errors.Is(err, ErrNoResponders) {
		t.Fatalf("call to a held node: %v, want ErrNoResponders", err)
	}
	if err := hn.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(addrs()); got != "[cli:a cluster:0 service:s]" {
		t.Fatalf("LiveNodes after Start = %s", got)
	}
	if _, err := cli.Call(ctx, "service:s", "x", nil); err != nil {
		t.Fatal(err)
	}
	nodes, _ := LiveNodes(ctx, rdb, ks)
	for _, n := range nodes {
		if n.PID == 0 || n.Kind == "" || n.Expires.Before(time.Now()) || n.StartedAt.IsZero() {
			t.Errorf("incomplete NodeInfo %+v", n)
		}
	}
}

func TestOptionsValidation(t *testing.T) {
	_, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("unit")
	for _, addr := range []string{"", "cluster:", "service", "launcher:", "foo:1", "cluster:1 2", "{x}"} {
		if _, err := New(context.Background(), Options{Redis: rdb, Keys: ks, Addr: addr}); !errors.Is(err, ErrBadAddress) {
			t.Errorf("New(%q) = %v, want ErrBadAddress", addr, err)
		}
	}
}

// A slow handler does not hold up the requests behind it in the same inbox.
func TestSlowHandlerDoesNotBlockInbox(t *testing.T) {
	for _, group := range []bool{false, true} {
		t.Run(fmt.Sprintf("group=%v", group), func(t *testing.T) {
			_, rdb := testredis.Mini(t)
			ks := keyspace.MustNew("unit")
			o := fastOpts(rdb, ks, "service:s")
			o.Group = group
			svc := newNode(t, o)
			release := make(chan struct{})
			svc.Handle("slow", func(ctx context.Context, r *Request) ([]byte, error) { <-release; return nil, nil })
			svc.Handle("echo", echo)
			cli := newNode(t, fastOpts(rdb, ks, "cli:a"))
			ctx := ctxT(t, 5*time.Second)
			slowDone := make(chan error, 1)
			go func() { _, err := cli.Call(ctx, "service:s", "slow", nil); slowDone <- err }()
			testwait.For(t, 2*time.Second, "the slow call to start", func() bool { return len(svc.sem) == 1 })
			for i := range 5 {
				if out, err := cli.Call(ctx, "service:s", "echo", []byte{byte(i)}); err != nil || out[0] != byte(i) {
					t.Fatalf("echo behind a slow call: %v, %v", out, err)
				}
			}
			close(release)
			if err := <-slowDone; err != nil {
				t.Fatal(err)
			}
		})
	}
}
