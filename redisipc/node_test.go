package redisipc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/internal/testwait"
	"github.com/megane-go/megane/keyspace"
)

// fast options keep unit tests quick: short blocks and heartbeats.
func fastOpts(rdb redis.UniversalClient, ks keyspace.Keyspace, addr string) Options {
	return Options{Redis: rdb, Keys: ks, Addr: addr, BlockTimeout: 100 * time.Millisecond,
		HeartbeatTTL: 600 * time.Millisecond, DirectoryRefresh: 100 * time.Millisecond}
}

func newNode(t testing.TB, o Options) *Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := New(ctx, o)
	if err != nil {
		t.Fatalf("New(%s): %v", o.Addr, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := n.Close(ctx); err != nil {
			t.Errorf("Close(%s): %v", o.Addr, err)
		}
	})
	return n
}

func echo(ctx context.Context, r *Request) ([]byte, error) { return r.Payload, nil }

func ctxT(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestCallSendHandle(t *testing.T) {
	_, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("unit")
	svc := newNode(t, fastOpts(rdb, ks, "cluster:1"))
	var sent atomic.Int32
	svc.Handle("echo", echo)
	svc.Handle("fail", func(ctx context.Context, r *Request) ([]byte, error) { return nil, errors.New("boom") })
	svc.Handle("panic", func(ctx context.Context, r *Request) ([]byte, error) { panic("kaboom") })
	svc.Handle("note", func(ctx context.Context, r *Request) ([]byte, error) { sent.Add(1); return nil, nil })
	svc.Handle("whoami", func(ctx context.Context, r *Request) ([]byte, error) {
		return []byte(r.From + "|" + r.To + "|" + r.Op), nil
	})
	cli := newNode(t, fastOpts(rdb, ks, "cli:a"))
	ctx := ctxT(t, 5*time.Second)

	for _, tc := range []struct {
		op, in, want string
		is           error
		substr       string
	}{
		{op: "echo", in: "hello", want: "hello"},
		{op: "echo", in: "", want: ""},
		{op: "whoami", want: "cli:a|cluster:1|whoami"},
		{op: "fail", substr: "boom"},
		{op: "panic", substr: "kaboom"},
		{op: "nope", is: ErrUnknownOp},
	} {
		t.Run(tc.op, func(t *testing.T) {
			out, err := cli.Call(ctx, "cluster:1", tc.op, []byte(tc.in))
			if tc.is != nil || tc.substr != "" {
				var re *RemoteError
				if !errors.As(err, &re) || re.From != "cluster:1" {
					t.Fatalf("err = %v, want a RemoteError from cluster:1", err)
				}
				if tc.is != nil && !errors.Is(err, tc.is) {
					t.Fatalf("err = %v, want %v", err, tc.is)
				}
				if !strings.Contains(err.Error(), tc.substr) {
					t.Fatalf("err = %v, want it to mention %q", err, tc.substr)
				}
				return
			}
			if err != nil || string(out) != tc.want {
				t.Fatalf("Call = %q, %v; want %q", out, err, tc.want)
			}
		})
	}

	var got struct{ A int }
	if err := cli.CallJSON(ctx, "cluster:1", "echo", map[string]int{"A": 7}, &got); err != nil || got.A != 7 {
		t.Fatalf("CallJSON = %+v, %v", got, err)
	}
	if err := cli.Send(ctx, "cluster:1", "note", nil); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 3*time.Second, "Send to be handled", func() bool { return sent.Load() == 1 })

	// Concurrent calls: every answer reaches its own caller.
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			want := fmt.Sprint(i)
			out, err := cli.Call(ctx, "cluster:1", "echo", []byte(want))
			if err != nil || string(out) != want {
				t.Errorf("call %d = %q, %v", i, out, err)
			}
		}()
	}
	wg.Wait()
}

func TestNoRespondersAndTimeout(t *testing.T) {
	_, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("unit")
	cli := newNode(t, fastOpts(rdb, ks, "cli:a"))
	slow := newNode(t, fastOpts(rdb, ks, "service:slow"))
	block := make(chan struct{})
	t.Cleanup(func() { close(block) })
	slow.Handle("wait", func(ctx context.Context, r *Request) ([]byte, error) {
		<-block
		return nil, nil
	})

	start := time.Now()
	_, err := cli.Call(ctxT(t, 5*time.Second), "cluster:9", "x", nil)
	if !errors.Is(err, ErrNoResponders) {
		t.Fatalf("Call to missing node: %v, want ErrNoResponders", err)
	}
	if err := cli.Send(ctxT(t, 5*time.Second), "service:none", "x", nil); !errors.Is(err, ErrNoResponders) {
		t.Fatalf("Send to missing node: %v, want ErrNoResponders", err)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("ErrNoResponders took %v, want fast", el)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	_, err = cli.Call(ctx, "service:slow", "wait", nil)
	if !errors.Is(err, ErrTimeout) || !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Call to slow node: %v, want ErrTimeout", err)
	}

	big := make([]byte, 2<<20)
	if _, err := cli.Call(ctxT(t, time.Second), "service:slow", "wait", big); !errors.Is(err, ErrPayloadTooLarge) {
		t.Fatalf("big payload: %v, want ErrPayloadTooLarge", err)
	}
	if _, err := cli.Call(ctxT(t, time.Second), "bogus addr", "x", nil); !errors.Is(err, ErrBadAddress) {
		t.Fatalf("bad address: %v, want ErrBadAddress", err)
	}
}
