package redisipc

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/internal/testwait"
	"github.com/megane-go/megane/keyspace"
)

// Tests that every key IPC writes has an owner that deletes it or a TTL,
// and that no remote string becomes a key unchecked.

func pttl(t *testing.T, rdb redis.UniversalClient, key string) time.Duration {
	t.Helper()
	d, err := rdb.PTTL(context.Background(), key).Result()
	if err != nil {
		t.Fatalf("PTTL %s: %v", key, err)
	}
	return d
}

func exists(t *testing.T, rdb redis.UniversalClient, key string) bool {
	t.Helper()
	n, err := rdb.Exists(context.Background(), key).Result()
	if err != nil {
		t.Fatalf("EXISTS %s: %v", key, err)
	}
	return n == 1
}

// keysMatching lists the keys matching a glob pattern (KEYS: tests only).
func keysMatching(t *testing.T, rdb redis.UniversalClient, pattern string) []string {
	t.Helper()
	keys, err := rdb.Keys(context.Background(), pattern).Result()
	if err != nil {
		t.Fatalf("KEYS %s: %v", pattern, err)
	}
	return keys
}

// Every IPC-using megane-cli command used to leave a {inbox:cli:<hex>}
// stream behind, with no TTL. A CLI node's streams have a TTL while it
// lives, the heartbeat pushes it back, and Close deletes them.
func TestCLIStreamsExpireAndGoOnClose(t *testing.T) {
	m, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("unit")
	svc := newNode(t, fastOpts(rdb, ks, "cluster:0"))
	svc.Handle("echo", echo)
	ctx := ctxT(t, 10*time.Second)

	for i := range 3 {
		n, err := New(ctx, fastOpts(rdb, ks, "cli:"+strconv.Itoa(i)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := n.Call(ctx, "cluster:0", "echo", []byte("x")); err != nil {
			t.Fatal(err)
		}
		ttl := n.streamTTL()
		for _, key := range []string{ks.Inbox(n.Addr()), ks.Replies(n.Instance())} {
			if d := pttl(t, rdb, key); d <= 0 || d > ttl {
				t.Errorf("%s has TTL %v while its node lives, want (0, %v]", key, d, ttl)
			}
		}
		// The heartbeat pushes the TTL back: age the keys, then wait for it.
		m.FastForward(ttl - time.Second)
		testwait.For(t, 5*time.Second, "the heartbeat to refresh the streams' TTLs", func() bool {
			return pttl(t, rdb, ks.Inbox(n.Addr())) > ttl/2 && pttl(t, rdb, ks.Replies(n.Instance())) > ttl/2
		})
		if err := n.Close(ctx); err != nil {
			t.Fatal(err)
		}
		for _, key := range []string{ks.Inbox(n.Addr()), ks.Replies(n.Instance()), ks.Node(n.Instance())} {
			if exists(t, rdb, key) {
				t.Errorf("%s outlived its node's Close", key)
			}
		}
	}
	if left := keysMatching(t, rdb, ks.Base()+"*cli*"); len(left) > 0 {
		t.Errorf("CLI nodes left %v", left)
	}
	// The service's own inbox stays for its next process, but on a TTL.
	if d := pttl(t, rdb, ks.Inbox("cluster:0")); d <= 0 {
		t.Errorf("cluster inbox TTL %v, want one", d)
	}
}

// A node that dies without Close leaves only keys that expire.
func TestCrashedNodeLeavesOnlyExpiringKeys(t *testing.T) {
	m, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("unit")
	for _, o := range []Options{fastOpts(rdb, ks, "cli:x"), fastOpts(rdb, ks, "service:s"), fastOpts(rdb, ks, "cluster:3")} {
		// Its own client, closed to cut the node off as a crash would.
		own := redis.NewClient(&redis.Options{Addr: m.Addr()})
		o.Redis = own
		o.Group = strings.HasPrefix(o.Addr, "service:")
		n, err := New(ctxT(t, 5*time.Second), o)
		if err != nil {
			t.Fatal(err)
		}
		_ = own.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_ = n.Close(ctx) // fails: Redis is out of reach
		cancel()
	}
	keys := keysMatching(t, rdb, ks.Base()+"*")
	if len(keys) == 0 {
		t.Fatal("no keys at all: the test cut the nodes off too early")
	}
	for _, key := range keys {
		if d := pttl(t, rdb, key); d <= 0 {
			t.Errorf("%s has no TTL (%v)", key, d)
		}
	}
	m.FastForward(2 * time.Minute)
	if left := keysMatching(t, rdb, ks.Base()+"*"); len(left) > 0 {
		t.Errorf("after the TTLs: %v", left)
	}
}

// A reply arriving after its caller left used to recreate the caller's
// reply stream, with no TTL and no owner. It is dropped instead.
func TestLateReplyDoesNotRecreateReplyStream(t *testing.T) {
	_, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("unit")
	release := make(chan struct{})
	started := make(chan struct{}, 1)
	svcCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	svc, err := New(svcCtx, fastOpts(rdb, ks, "cluster:0"))
	if err != nil {
		t.Fatal(err)
	}
	svc.Handle("slow", func(ctx context.Context, r *Request) ([]byte, error) {
		started <- struct{}{}
		<-release // outlives the caller's deadline on purpose
		return []byte("late"), nil
	})
	cli, err := New(svcCtx, fastOpts(rdb, ks, "cli:gone"))
	if err != nil {
		t.Fatal(err)
	}
	replies := ks.Replies(cli.Instance())
	callCtx, callCancel := context.WithTimeout(svcCtx, 300*time.Millisecond)
	_, err = cli.Call(callCtx, "cluster:0", "slow", nil)
	callCancel()
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("call = %v, want ErrTimeout", err)
	}
	<-started
	if err := cli.Close(svcCtx); err != nil {
		t.Fatal(err)
	}
	if exists(t, rdb, replies) {
		t.Fatal("Close left the reply stream")
	}
	close(release)
	// Close returns once the handler finished and the writer flushed its reply.
	if err := svc.Close(svcCtx); err != nil {
		t.Fatal(err)
	}
	if exists(t, rdb, replies) {
		t.Errorf("the late reply recreated %s (TTL %v)", replies, pttl(t, rdb, replies))
	}
}

// A caller-chosen reply-to such as "x}{y" used to become the key
// "{replies:x}{y}". Names the keyspace refuses are dead letters, never keys.
func TestBadReplyToNeverBecomesAKey(t *testing.T) {
	_, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("unit")
	svc := newNode(t, fastOpts(rdb, ks, "cluster:0"))
	svc.Handle("echo", echo)
	ctx := ctxT(t, 10*time.Second)
	bad := []string{"x}{y", "a b", "glob*", "new\nline", strings.Repeat("x", keyspace.MaxNameLen+1)}
	for i, rt := range bad {
		env := envelope{Kind: kindRequest, ID: strconv.Itoa(i), Op: "echo", From: "cli:evil", Instance: "cli-evil",
			To: "cluster:0", ReplyTo: rt, Payload: []byte("hi")}
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: ks.Inbox("cluster:0"), Values: []any{fieldMsg, env.encode()}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	testwait.For(t, 5*time.Second, "a dead letter per bad reply-to", func() bool { return rdb.XLen(ctx, ks.DeadLetter()).Val() == int64(len(bad)) })
	for _, m := range rdb.XRange(ctx, ks.DeadLetter(), "-", "+").Val() {
		if r, _ := m.Values["reason"].(string); !strings.Contains(r, "bad reply-to") {
			t.Errorf("dead letter reason %q", r)
		}
	}
	if got := keysMatching(t, rdb, ks.Base()+"*replies*"); len(got) != 1 || got[0] != ks.Replies(svc.Instance()) {
		t.Errorf("reply streams = %q, want only the service's own", got)
	}
	// The same reply-to through a broadcast: still no key.
	env := envelope{Kind: kindBroadcast, ID: "b", Op: "echo", From: "cli:evil", Instance: "cli-evil",
		To: TargetAll, ReplyTo: "x}{y"}
	if err := rdb.Publish(ctx, ks.Broadcast(), env.encode()).Err(); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 5*time.Second, "the bad broadcast's dead letter", func() bool { return rdb.XLen(ctx, ks.DeadLetter()).Val() == int64(len(bad)+1) })
	if got := keysMatching(t, rdb, ks.Base()+"*replies*"); len(got) != 1 {
		t.Errorf("reply streams = %q", got)
	}
}

// Every name that becomes a key is checked before anything is written.
func TestCallerSuppliedNamesAreChecked(t *testing.T) {
	_, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("unit")
	for _, o := range []Options{
		{Addr: "service:a*b"}, {Addr: "service:x}{y"}, {Addr: "cli:" + strings.Repeat("x", keyspace.MaxNameLen)},
		{Addr: "cli:a", Instance: "i}{j"}, {Addr: "cli:a", Instance: "tab\there"},
	} {
		o.Redis, o.Keys = rdb, ks
		if _, err := New(context.Background(), o); !errors.Is(err, ErrBadAddress) || !errors.Is(err, ErrInvalidOptions) {
			t.Errorf("New(addr %q, instance %q) = %v, want ErrBadAddress and ErrInvalidOptions", o.Addr, o.Instance, err)
		}
	}
	for _, o := range []Options{{Addr: "cli:a", Keys: ks}, {Addr: "cli:a", Redis: rdb}} {
		if _, err := New(context.Background(), o); !errors.Is(err, ErrInvalidOptions) || errors.Is(err, ErrBadAddress) {
			t.Errorf("New without Redis or Keys = %v, want ErrInvalidOptions alone", err)
		}
	}
	cli := newNode(t, fastOpts(rdb, ks, "cli:a"))
	ctx := ctxT(t, 5*time.Second)
	for _, to := range []string{"service:a*b", "cluster:1}{x", "service:\x00"} {
		if _, err := cli.Call(ctx, to, "x", nil); !errors.Is(err, ErrBadAddress) {
			t.Errorf("Call(%q) = %v, want ErrBadAddress", to, err)
		}
		if err := cli.Send(ctx, to, "x", nil); !errors.Is(err, ErrBadAddress) {
			t.Errorf("Send(%q) = %v, want ErrBadAddress", to, err)
		}
		if _, err := cli.Gather(ctx, to, "x", nil); !errors.Is(err, ErrBadAddress) {
			t.Errorf("Gather(%q) = %v, want ErrBadAddress", to, err)
		}
	}
	for _, key := range keysMatching(t, rdb, ks.Base()+"*") {
		if strings.Count(key, "{") > 1 || strings.ContainsAny(key, "*\x00") || len(key) > 100 {
			t.Errorf("key from a bad name: %q", key)
		}
	}
}

// A 5 MiB bad broadcast used to cost one 5 MiB dead letter per node. Now
// one node records it, keeping DeadLetterRawMax bytes and the length.
func TestBadBroadcastIsOneBoundedDeadLetter(t *testing.T) {
	_, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("unit")
	var nodes []*Node
	for _, a := range []string{"launcher", "cluster:0", "cluster:1", "cluster:2", "service:s"} {
		o := fastOpts(rdb, ks, a)
		o.Group = a == "service:s"
		nodes = append(nodes, newNode(t, o))
	}
	ctx := ctxT(t, 20*time.Second)
	huge := bytes.Repeat([]byte{0xff}, 5<<20) // not an envelope: unknown version
	if err := rdb.Publish(ctx, ks.Broadcast(), huge).Err(); err != nil {
		t.Fatal(err)
	}
	// A bad inbox entry is bounded the same way.
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: ks.Inbox("cluster:0"), Values: []any{fieldMsg, huge}}).Err(); err != nil {
		t.Fatal(err)
	}
	testwait.For(t, 10*time.Second, "every node to see the bad messages", func() bool {
		for i, n := range nodes {
			want := int64(1)
			if i == 1 {
				want = 2 // cluster:0 also got the inbox entry
			}
			if n.deadLetters.Load() != want {
				return false
			}
		}
		return true
	})
	for _, n := range nodes {
		// Close waits for the node's handlers and flushes its writer.
		if err := n.Close(ctx); err != nil {
			t.Fatal(err)
		}
	}
	dl := rdb.XRange(ctx, ks.DeadLetter(), "-", "+").Val()
	if len(dl) != 2 {
		t.Fatalf("%d dead letters, want 2 (one for the broadcast, one for the inbox entry)", len(dl))
	}
	for _, m := range dl {
		raw, _ := m.Values["raw"].(string)
		if len(raw) != DeadLetterRawMax || m.Values["raw_len"] != strconv.Itoa(len(huge)) {
			t.Errorf("dead letter from %v keeps %d bytes, raw_len %v; want %d and %d",
				m.Values["stream"], len(raw), m.Values["raw_len"], DeadLetterRawMax, len(huge))
		}
	}
	if mem := rdb.MemoryUsage(ctx, ks.DeadLetter()); mem.Err() == nil && mem.Val() > 64<<10 {
		t.Errorf("dead-letter stream takes %d bytes", mem.Val())
	}
}

// A flushed Redis takes the streams with it; the heartbeat brings them back
// with their TTL, and calls work again.
func TestStreamsComeBackAfterFlush(t *testing.T) {
	m, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("unit")
	so := fastOpts(rdb, ks, "service:s")
	so.Group = true
	svc := newNode(t, so)
	svc.Handle("echo", echo)
	cli := newNode(t, fastOpts(rdb, ks, "cli:a"))
	ctx := ctxT(t, 10*time.Second)
	m.FlushAll()
	testwait.For(t, 8*time.Second, "calls to work after FLUSHALL", func() bool {
		ctx, cancel := context.WithTimeout(ctx, 500*time.Millisecond)
		defer cancel()
		out, err := cli.Call(ctx, "service:s", "echo", []byte("back"))
		return err == nil && string(out) == "back"
	})
	for _, key := range []string{ks.Inbox("service:s"), ks.Inbox("cli:a"), ks.Replies(cli.Instance()), ks.Replies(svc.Instance())} {
		if d := pttl(t, rdb, key); d <= 0 {
			t.Errorf("%s came back with TTL %v", key, d)
		}
	}
}
