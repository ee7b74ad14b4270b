package redisipc

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/internal/testproc"
	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/internal/testwait"
	"github.com/megane-go/megane/keyspace"
)

// ipcnode is the test program that runs one node per process. It has no
// disgo in it, so it races along with the tests. It lives under services,
// which it runs, since redisipc must not depend on services.
var ipcnode = &testproc.Binary{Pkg: "../services/internal/ipcnode", Race: raceEnabled}

func TestMain(m *testing.M) {
	os.Exit(testproc.Run(m, ipcnode))
}

// proc is one ipcnode process.
type proc struct {
	*testproc.Proc
}

// spawn starts ipcnode with args and waits (with a deadline) for it to
// print READY. The process is killed when the test ends.
func spawn(t *testing.T, ks keyspace.Keyspace, args ...string) *proc {
	t.Helper()
	args = append([]string{"-redis", testredis.URL(t), "-ns", ks.Namespace()}, args...)
	p := testproc.Start(t, testproc.Spec{Name: "ipcnode", Path: ipcnode.Path(t), Args: args})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	switch err := p.WaitFor(ctx, func() bool { return slices.Contains(p.Lines(), "READY") }); {
	case errors.Is(err, testproc.ErrExited):
		t.Fatalf("ipcnode %v exited before it was ready", args)
	case err != nil:
		t.Fatalf("ipcnode %v not ready after 15s", args)
	}
	return &proc{p}
}

func (p *proc) kill(t *testing.T) {
	t.Helper()
	if err := p.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-p.Exited()
}

func realNode(t *testing.T, rdb redis.UniversalClient, ks keyspace.Keyspace, addr string) *Node {
	t.Helper()
	o := Options{Redis: rdb, Keys: ks, Addr: addr, BlockTimeout: 200 * time.Millisecond,
		DirectoryRefresh: 200 * time.Millisecond, HeartbeatTTL: 2 * time.Second}
	return newNode(t, o)
}

// load calls service:work "job" total times with conc calls in flight and
// returns the outcomes. Each payload is its index, and the answer must be
// the same index.
func load(ctx context.Context, t *testing.T, n *Node, total, conc int, timeout time.Duration, progress *atomic.Int64) (ok int, errs []error) {
	var mu sync.Mutex
	next := atomic.Int64{}
	var wg sync.WaitGroup
	for range conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= total {
					return
				}
				cctx, cancel := context.WithTimeout(ctx, timeout)
				want := fmt.Sprint(i)
				out, err := n.Call(cctx, "service:work", "job", []byte(want))
				cancel()
				if progress != nil {
					progress.Add(1)
				}
				mu.Lock()
				switch {
				case err != nil:
					errs = append(errs, err)
				case string(out) != want:
					errs = append(errs, fmt.Errorf("call %d answered %q", i, out))
				default:
					ok++
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return ok, errs
}

func jobsPerCopy(ctx context.Context, t *testing.T, n *Node) map[string]int64 {
	t.Helper()
	g, err := n.Gather(ctx, "service:work", OpStats, nil)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]int64{}
	for _, a := range g.Answers {
		var st StatsReply
		if err := a.Decode(&st); err != nil {
			t.Fatal(err)
		}
		jobs, _ := st.Fields["jobs"].(float64)
		out[a.Instance] = int64(jobs)
	}
	return out
}

// Three service processes share 10 000 requests: every one answered with
// its own payload, each handled exactly once, all acknowledged.
func TestProcessesShareLoad(t *testing.T) { testredis.EachBackend(t, testProcessesShareLoad) }

func testProcessesShareLoad(t *testing.T) {
	rdb, ks := testredis.Real(t)
	for i := range 3 {
		spawn(t, ks, "-role", "service", "-name", "work", "-copy", fmt.Sprint(i))
	}
	cli := realNode(t, rdb, ks, "cli:test")
	ctx := ctxT(t, 60*time.Second)

	ok, errs := load(ctx, t, cli, 10_000, 64, 20*time.Second, nil)
	if ok != 10_000 || len(errs) != 0 {
		t.Fatalf("%d answered, %d failed (first: %v)", ok, len(errs), first(errs))
	}
	jobs := jobsPerCopy(ctx, t, cli)
	var sum int64
	for inst, n := range jobs {
		sum += n
		if n == 0 {
			t.Errorf("copy %s handled nothing", inst)
		}
	}
	if len(jobs) != 3 || sum != 10_000 {
		t.Fatalf("jobs per copy %v: sum %d, want 3 copies and exactly 10000", jobs, sum)
	}
	t.Logf("jobs per copy: %v", jobs)
	// An ack travels right behind its reply: wait for the last ones.
	testwait.For(t, 5*time.Second, "every entry to be acknowledged", func() bool {
		return rdb.XPending(ctx, ks.Inbox("service:work"), ks.InboxGroup()).Val().Count == 0
	})
}

func first(errs []error) error {
	if len(errs) == 0 {
		return nil
	}
	return errs[0]
}

// SIGKILL of one copy mid-load: every request is answered by another copy
// (the dead copy's pending entries are reclaimed) or fails with ErrTimeout;
// none hangs.
func TestProcessKilledMidLoad(t *testing.T) { testredis.EachBackend(t, testProcessKilledMidLoad) }

func testProcessKilledMidLoad(t *testing.T) {
	rdb, ks := testredis.Real(t)
	var copies []*proc
	for i := range 3 {
		copies = append(copies, spawn(t, ks, "-role", "service", "-name", "work", "-copy", fmt.Sprint(i),
			"-work", "2ms", "-ttl", "1s"))
	}
	cli := realNode(t, rdb, ks, "cli:test")
	ctx := ctxT(t, 60*time.Second)

	var progress atomic.Int64
	type result struct {
		ok   int
		errs []error
	}
	res := make(chan result, 1)
	start := time.Now()
	go func() {
		ok, errs := load(ctx, t, cli, 4000, 64, 8*time.Second, &progress)
		res <- result{ok, errs}
	}()
	testwait.For(t, 20*time.Second, "1000 answers before the kill", func() bool { return progress.Load() >= 1000 })
	copies[0].kill(t)
	held := int64(0)
	if p, err := rdb.XPending(ctx, ks.Inbox("service:work"), ks.InboxGroup()).Result(); err == nil {
		for c, n := range p.Consumers {
			if strings.HasPrefix(c, "service-work-0-") {
				held = n
			}
		}
	}
	t.Logf("killed copy 0 after %d answers, holding %d pending requests", progress.Load(), held)

	var r result
	select {
	case r = <-res:
	case <-time.After(40 * time.Second):
		t.Fatalf("load hung: %d of 4000 calls returned", progress.Load())
	}
	timeouts := 0
	for _, err := range r.errs {
		if !errors.Is(err, ErrTimeout) {
			t.Fatalf("call failed with %v, want an answer or ErrTimeout", err)
		}
		timeouts++
	}
	t.Logf("4000 calls in %v: %d answered, %d timed out", time.Since(start).Round(time.Millisecond), r.ok, timeouts)
	if r.ok+timeouts != 4000 {
		t.Fatalf("%d answered + %d timeouts != 4000", r.ok, timeouts)
	}
	// The dead copy's pending entries were taken over, not left behind.
	testwait.For(t, 10*time.Second, "no pending entries", func() bool {
		return rdb.XPending(ctx, ks.Inbox("service:work"), ks.InboxGroup()).Val().Count == 0
	})
}

// Broadcast eval over 4 cluster processes returns 4 answers; with one
// killed, 3 answers plus that one in Missing, within the deadline.
func TestProcessEvalClusters(t *testing.T) { testredis.EachBackend(t, testProcessEvalClusters) }

func testProcessEvalClusters(t *testing.T) {
	rdb, ks := testredis.Real(t)
	ctx := ctxT(t, 60*time.Second)
	fields := []any{"shard_count", 8, "clusters", 4}
	for s := range 8 {
		fields = append(fields, fmt.Sprint(s), s/2)
	}
	if err := rdb.HSet(ctx, ks.ShardMap(), fields...).Err(); err != nil {
		t.Fatal(err)
	}
	var clusters []*proc
	for i := range 4 {
		clusters = append(clusters, spawn(t, ks, "-role", "cluster", "-id", fmt.Sprint(i), "-ttl", "1s"))
	}
	cli := realNode(t, rdb, ks, "cli:test")

	g, err := cli.Eval(ctx, TargetClusters, `{"id": cluster_id, "shards": shard_ids, "guilds": guilds, "up": uptime_seconds > 0}`)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Answers) != 4 || len(g.Missing) != 0 {
		t.Fatalf("eval: %d answers, missing %v", len(g.Answers), g.Missing)
	}
	for i, a := range g.Answers {
		var v struct {
			ID     int   `json:"id"`
			Shards []int `json:"shards"`
			Guilds int   `json:"guilds"`
			Up     bool  `json:"up"`
		}
		if err := a.Decode(&v); err != nil || v.ID != i || a.From != ClusterAddr(i) || v.Guilds != 1000+i ||
			len(v.Shards) != 2 || v.Shards[0] != 2*i || !v.Up {
			t.Fatalf("answer %d from %s: %+v, %v", i, a.From, v, err)
		}
	}
	// Guild routing reaches the owner directly.
	for s := range 8 {
		out, err := cli.CommandGuild(ctx, uint64(s)<<22, "owner", nil)
		if err != nil || string(out) != ClusterAddr(s/2) {
			t.Fatalf("guild on shard %d: %q, %v", s, out, err)
		}
	}

	clusters[2].kill(t)
	ectx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	start := time.Now()
	g, err = cli.Eval(ectx, TargetClusters, "cluster_id")
	el := time.Since(start)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Answers) != 3 || fmt.Sprint(g.Missing) != "[cluster:2]" {
		t.Fatalf("after kill: %d answers, missing %v", len(g.Answers), g.Missing)
	}
	if el > 2500*time.Millisecond {
		t.Fatalf("eval took %v with a 2s deadline", el)
	}
	t.Logf("eval with a dead (still registered) cluster: 3 answers + missing %v in %v", g.Missing, el.Round(time.Millisecond))

	// Once its registration lapses, the shard map still names it: reported
	// missing without waiting for the deadline.
	testwait.For(t, 10*time.Second, "cluster:2's registration to lapse", func() bool {
		nodes, _ := LiveNodes(ctx, rdb, ks)
		for _, n := range nodes {
			if n.Addr == "cluster:2" {
				return false
			}
		}
		return true
	})
	start = time.Now()
	g, err = cli.Eval(ctx, TargetClusters, "cluster_id")
	if err != nil || len(g.Answers) != 3 || fmt.Sprint(g.Missing) != "[cluster:2]" {
		t.Fatalf("after expiry: %+v, %v", g, err)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("eval took %v though every live cluster answered", el)
	}
	if _, err := cli.Command(ctx, 2, "owner", nil); !errors.Is(err, ErrNoResponders) {
		t.Fatalf("command to the dead cluster: %v, want ErrNoResponders", err)
	}
}

// Streams stay bounded on a real Redis, whose MAXLEN ~ trims whole nodes.
func TestStreamsTrimmed(t *testing.T) { testredis.EachBackend(t, testStreamsTrimmed) }

func testStreamsTrimmed(t *testing.T) {
	rdb, ks := testredis.Real(t)
	ctx := ctxT(t, 30*time.Second)
	// MAXLEN is applied by the writer of each entry: the caller trims the
	// inbox, the answering node trims the reply stream.
	svc := newNode(t, Options{Redis: rdb, Keys: ks, Addr: "cluster:0", ReplyMaxLen: 100,
		BlockTimeout: 200 * time.Millisecond})
	svc.Handle("echo", echo)
	cli := newNode(t, Options{Redis: rdb, Keys: ks, Addr: "cli:a", InboxMaxLen: 100,
		BlockTimeout: 200 * time.Millisecond})
	var wg sync.WaitGroup
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 125 {
				if _, err := cli.Call(ctx, "cluster:0", "echo", []byte("x")); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	// Approximate trimming keeps at most one radix node (100 entries by
	// default) beyond the limit.
	for _, key := range []string{ks.Inbox("cluster:0"), ks.Replies(cli.Instance())} {
		if n := rdb.XLen(ctx, key).Val(); n > 250 {
			t.Fatalf("%s holds %d entries after 2000 requests, limit 100", key, n)
		}
	}
}
