package redisipc

import (
	"context"
	"encoding/json"
	"errors"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/expr-lang/expr"

	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/internal/testwait"
	"github.com/megane-go/megane/keyspace"
)

// The two expressions that took processes down before evaluations were
// bounded: the first allocated a terabyte in one call, the second ran for
// minutes and grew the heap by gigabytes after its caller had given up.
const (
	bombRepeat = `len(repeat(repeat("x", 999999), 999999))`
	bombNested = `let r = 1..1000; sum(r, sum(r, sum(r, 1)))`
)

func testEnv() *EvalEnv {
	e := &EvalEnv{vals: map[string]any{}, dyn: map[string]func() any{}}
	e.Set("guilds", 3)
	e.Set("names", []string{"a", "b", "c"})
	e.Set("double", func(x int) int { return 2 * x })
	e.Set("shards", []map[string]any{{"id": 0, "guilds": 10}, {"id": 1, "guilds": 32}})
	e.Set("ptr", &struct{ N int }{N: 7})
	return e
}

func limits(l EvalLimits) EvalLimits {
	l.setDefaults()
	return l
}

// heapWatch samples the heap until stopped and reports the peak growth
// over the heap at its start.
type heapWatch struct {
	base, peak atomic.Int64
	stop       chan struct{}
	done       chan struct{}
}

func watchHeap() *heapWatch {
	runtime.GC()
	h := &heapWatch{stop: make(chan struct{}), done: make(chan struct{})}
	o := readHeap().objects
	h.base.Store(o)
	h.peak.Store(o)
	go func() {
		defer close(h.done)
		t := time.NewTicker(time.Millisecond)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-t.C:
				if o := readHeap().objects; o > h.peak.Load() {
					h.peak.Store(o)
				}
			}
		}
	}()
	return h
}

func (h *heapWatch) growth() int64 {
	close(h.stop)
	<-h.done
	return h.peak.Load() - h.base.Load()
}

// evalWithin runs one evaluation and fails the test unless it returns
// within bound.
func evalWithin(t *testing.T, e *EvalEnv, ctx context.Context, code string, lim EvalLimits, bound time.Duration) ([]byte, error, time.Duration) {
	t.Helper()
	type result struct {
		out []byte
		err error
	}
	ch := make(chan result, 1)
	start := time.Now()
	go func() {
		out, err := e.evaluate(ctx, code, lim)
		ch <- result{out, err}
	}()
	select {
	case r := <-ch:
		return r.out, r.err, time.Since(start)
	case <-time.After(bound):
		t.Fatalf("%s: still evaluating after %v", code, bound)
		return nil, nil, 0
	}
}

// waitNoEvaluation waits until no goroutine is evaluating or watching an
// evaluation.
func waitNoEvaluation(t *testing.T) {
	t.Helper()
	buf := make([]byte, 4<<20)
	testwait.Problems(t, 5*time.Second, "no evaluation running", func() []string {
		stacks := string(buf[:runtime.Stack(buf, true)])
		if !strings.Contains(stacks, "redisipc.(*EvalEnv).evaluate") && !strings.Contains(stacks, "redisipc.(*evalRun)") {
			return nil
		}
		return []string{stacks}
	})
}

// Checking does not change what expressions mean: results match plain
// expr's.
func TestEvalMatchesExpr(t *testing.T) {
	e := testEnv()
	lim := limits(EvalLimits{})
	for _, code := range []string{
		"1 + 2", `"a" + "b"`, "1.5 + 2", "guilds + 1", `guilds + 0.5`,
		"map(1..5, # * 2)", `let x = 1..3; sum(x, sum(x, #))`, `{"a": 1, "b": [1, 2]}`,
		"double(guilds)", `join(names, ",")`, `join(names)`, `toJSON({"a": 1})`, `toJSON(1..3)`,
		`filter(1..10, # % 2 == 0)`, `sortBy([3, 1, 2], #)`, `sortBy([3, 1, 2], #, "desc")`,
		`reduce(1..4, #acc + #, 0)`, `reduce(names, #acc + #)`, `repeat("ab", 3)`, `upper("x") + lower("Y")`,
		`split("a,b,c", ",")`, `split("a,b,c", ",", 2)`, `splitAfter("a,b", ",")`, `replace("aaa", "a", "bb")`,
		`string(1..3)`, `string({"a": 1})`, `flatten([[1], [2, [3]]])`, `names | map(# + "!")`,
		`sum(shards, .guilds)`, `map(shards, .id)`, `count(1..10, # > 5)`, `all(1..3, # > 0)`,
		`any(names, # == "b")`, `none(names, # == "z")`, `one(names, # == "a")`, `find(1..9, # > 4)`,
		`findIndex(1..9, # > 4)`, `findLast(1..9, # < 4)`, `findLastIndex(1..9, # < 4)`,
		`keys({"a": 1})`, `values({"a": 1})`, `reverse(1..3)`, `sort([3, 1, 2])`, `take(1..9, 3)`,
		`uniq([1, 1, 2])`, `concat([1], [2, 3])`, `toPairs({"a": 1})`, `len(fromPairs([["a", 1]]))`,
		`median([1, 2, 3])`, `max(1..4)`, `mean([1, 2])`, `toBase64("hi")`, `fromBase64("aGk=")`,
		`fromJSON("[1, {\"a\": 2}]")`, `trim("  x ")`, `5 in 1..10`, `len(1..0)`, `"x" in {"x": 1}`,
		`ptr.N * 2`, `let s = "ab"; s + s + s`, `map(names, # + string(#index))`, `1..3 | map(# + 1) | sum()`,
		`-(3 + 4)`, `guilds > 2 ? "many" : "few"`, `[1, 2, 3][1:]`, `(1..10)[2]`,
		`map(1..3, ({"n": #}))`, `groupBy(names, len(#))["1"] ?? "none"`,
	} {
		want, err := expr.Eval(code, e.snapshot())
		if err != nil {
			t.Errorf("%s: plain expr: %v", code, err)
			continue
		}
		wantJSON, _ := json.Marshal(want)
		got, err := e.evaluate(context.Background(), code, lim)
		if err != nil || string(got) != string(wantJSON) {
			t.Errorf("%s = %s, %v; want %s", code, got, err, wantJSON)
		}
	}
	// Errors stay errors (wrapping ErrEval, not a limit).
	for _, code := range []string{`repeat("x", -1)`, `no_such + 1`, `1 +* 2`, `double("x")`, `fromJSON("[")`} {
		if _, err := e.evaluate(context.Background(), code, lim); !errors.Is(err, ErrEval) || errors.Is(err, ErrEvalLimit) {
			t.Errorf("%s: %v, want ErrEval that is not ErrEvalLimit", code, err)
		}
	}
}

// Expressions that allocate far more than their text are refused before
// the allocation, and quickly; the heap stays within a few budgets.
func TestEvalMemoryBudget(t *testing.T) {
	e := testEnv()
	lim := limits(EvalLimits{MaxMemory: 16 << 20, Timeout: 10 * time.Second})
	bombs := []string{
		bombRepeat,
		`repeat("x", 17825792)`,
		`let a = repeat("x", 1048576); let b = a + a; let c = b + b; let d = c + c; let f = d + d; len(f + f)`,
		`reduce(1..100000, #acc + "xxxxxxxxxx", "")`,
		`len(1..3000000)`,
		`0..9223372036854775807`,
		`-9223372036854775807..9223372036854775807`,
		`let a = 1..1000; let b = map(1..1000, a); len(toJSON(map(1..1000, b)))`,
		`let a = 1..1000; let b = map(1..1000, a); len(string(map(1..1000, b)))`,
		`let a = 1..1000; let b = map(1..1000, a); len(flatten(map(1..1000, b)))`,
		`let a = 1..1000; let b = map(1..1000, a); map(1..100, b)`,
		`let a = map(1..1000, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"); len(join(a, repeat("y", 100000)))`,
		`len(replace(repeat("a", 10000), "a", repeat("b", 10000)))`,
		`len(split(repeat("a", 2097152), ""))`,
		`len(map(1..1000000, ({"a": #})))`,
		`len(map(1..1000000, [#, #]))`,
		`let a = 1..100000; len(concat(a, a, a, a, a, a, a, a, a, a, a, a, a, a, a, a, a, a, a, a, a, a, a))`,
		`len(fromJSON("[" + repeat("0,", 2000000) + "0]"))`,
		`let r = 1..1000; sum(r, len(groupBy(r, #)))`,
	}
	for _, code := range bombs {
		h := watchHeap()
		_, err, took := evalWithin(t, e, context.Background(), code, lim, 20*time.Second)
		grew := h.growth()
		if !errors.Is(err, ErrEvalLimit) || !errors.Is(err, ErrEval) || !strings.Contains(err.Error(), "16 MiB") {
			t.Errorf("%s: %v, want a memory limit error", code, err)
		}
		if grew > 4*lim.MaxMemory {
			t.Errorf("%s: heap grew by %d MiB, budget %d MiB", code, grew>>20, lim.MaxMemory>>20)
		}
		t.Logf("%.60s: refused in %v, heap +%d MiB: %v", code, took.Round(time.Millisecond), grew>>20, err)
	}
}

// A long evaluation stops at its deadline, whichever of the caller's and
// Options.Eval.Timeout comes first, and its goroutines end with it.
func TestEvalDeadlineStopsEvaluation(t *testing.T) {
	e := testEnv()
	for _, tc := range []struct {
		name    string
		timeout time.Duration
		ctx     time.Duration
		want    string
	}{
		{"Options.Eval.Timeout", 200 * time.Millisecond, time.Minute, "Options.Eval.Timeout"},
		{"caller deadline", time.Minute, 300 * time.Millisecond, "caller's deadline"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, code := range []string{
				bombNested,
				`let r = 1..1000; sum(r, sum(r, sum(r, sum(r, 1))))`,
				`let r = 1..100000; any(r, any(r, # < 0))`,
				`let r = 1..1000; count(r, count(r, count(r, double(#) < 0) < 0) < 0)`,
			} {
				ctx, cancel := context.WithTimeout(context.Background(), tc.ctx)
				h := watchHeap()
				_, err, took := evalWithin(t, e, ctx, code, limits(EvalLimits{Timeout: tc.timeout}), 10*max(tc.timeout, 300*time.Millisecond))
				cancel()
				grew := h.growth()
				if !errors.Is(err, ErrEvalLimit) || !strings.Contains(err.Error(), tc.want) {
					t.Errorf("%s: %v, want a deadline error naming %s", code, err, tc.want)
				}
				if grew > DefaultEvalMaxMemory {
					t.Errorf("%s: heap grew by %d MiB", code, grew>>20)
				}
				t.Logf("%s: stopped after %v, heap +%d MiB", code, took.Round(time.Millisecond), grew>>20)
			}
		})
	}
	// No watchdog or evaluation is left running.
	waitNoEvaluation(t)
}

// The heap sampler stops what the budget cannot see: memory allocated by
// the environment's own functions.
func TestEvalHeapBackstop(t *testing.T) {
	e := testEnv()
	var kept [][]byte
	e.Set("grow", func() int { kept = append(kept, make([]byte, 1<<20)); return 1 })
	defer func() { kept = nil }()
	lim := limits(EvalLimits{MaxMemory: 16 << 20, Timeout: 20 * time.Second})
	_, err, _ := evalWithin(t, e, context.Background(), `sum(1..10000, grow())`, lim, 30*time.Second)
	if !errors.Is(err, ErrEvalLimit) || !strings.Contains(err.Error(), "heap grew past") {
		t.Fatalf("%v, want the heap sampler's limit error", err)
	}
	if len(kept) >= 10000 {
		t.Fatalf("ran to the end")
	}
	t.Logf("stopped after %d MiB: %v", len(kept), err)
}

// Deep nesting would overflow the parser's stack, which no recover
// catches; the token limit refuses it first, on both sides.
func TestEvalExpressionSize(t *testing.T) {
	e := testEnv()
	lim := limits(EvalLimits{})
	for _, code := range []string{
		strings.Repeat("[", 1<<20),
		strings.Repeat("(", 1<<19) + "1" + strings.Repeat(")", 1<<19),
		strings.Repeat("-", 1<<20) + "1",
		strings.Repeat("1+", 5000) + "1",
	} {
		_, err := e.evaluate(context.Background(), code, lim)
		if !errors.Is(err, ErrEvalLimit) {
			t.Errorf("%.20s… (%d bytes): %v, want a size limit error", code, len(code), err)
		}
	}
	if _, err := e.evaluate(context.Background(), strings.Repeat("1+", 100)+"1", lim); err != nil {
		t.Errorf("a 201-node expression: %v", err)
	}
	if _, err := e.evaluate(context.Background(), `"`+strings.Repeat("x", 500000)+`"`, lim); err != nil {
		t.Errorf("a long string literal: %v", err)
	}
}

func startEvalNode(t *testing.T, addr string, lim EvalLimits) (*Node, *Node) {
	t.Helper()
	_, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("unit")
	o := fastOpts(rdb, ks, addr)
	o.Eval = lim
	return newNode(t, o), newNode(t, fastOpts(rdb, ks, "cli:t"))
}

// Too many evaluations at once are refused, not queued.
func TestEvalConcurrencyLimit(t *testing.T) {
	srv, cli := startEvalNode(t, "cluster:0", EvalLimits{MaxConcurrent: 2})
	release := make(chan struct{})
	var entered sync.WaitGroup
	entered.Add(2)
	srv.EvalEnv().Set("block", func() int { entered.Done(); <-release; return 1 })
	ctx := ctxT(t, 10*time.Second)
	errs := make(chan error, 2)
	for range 2 {
		go func() {
			_, err := cli.Call(ctx, "cluster:0", OpEval, []byte("block()"))
			errs <- err
		}()
	}
	entered.Wait()
	_, err := cli.Call(ctx, "cluster:0", OpEval, []byte("1"))
	var re *RemoteError
	if !errors.As(err, &re) || !errors.Is(err, ErrEvalLimit) || !errors.Is(err, ErrEval) || !strings.Contains(err.Error(), "busy") {
		t.Fatalf("third eval: %v, want a busy RemoteError", err)
	}
	close(release)
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	if out, err := cli.Call(ctx, "cluster:0", OpEval, []byte("1 + 1")); err != nil || string(out) != "2" {
		t.Fatalf("after: %s, %v", out, err)
	}
}

func TestEvalDisabled(t *testing.T) {
	_, cli := startEvalNode(t, "launcher", EvalLimits{Disabled: true})
	ctx := ctxT(t, 10*time.Second)
	g, err := cli.Eval(ctx, "launcher", "1 + 1")
	if err != nil || len(g.Answers) != 1 {
		t.Fatalf("%+v, %v", g, err)
	}
	var re *RemoteError
	if err := g.Answers[0].Err; !errors.As(err, &re) || !errors.Is(err, ErrEvalLimit) || !strings.Contains(err.Error(), "disabled") {
		t.Fatalf("%v, want a disabled RemoteError", err)
	}
	if _, err := cli.Call(ctx, "launcher", OpPing, nil); err != nil {
		t.Fatal(err)
	}
}

// The two reproductions, sent through a real Redis to a node as megane-cli
// would: each comes back as a limit error, the node keeps answering, and
// its heap stays bounded. The nested loop is sent six times in a row, as
// the cluster that gave up had received it.
func TestEvalBombsOverRedis(t *testing.T) {
	rdb, ks := testredis.Real(t)
	o := Options{Redis: rdb, Keys: ks, Addr: "cluster:0", Eval: EvalLimits{Timeout: time.Second}}
	newNode(t, o)
	cli := newNode(t, Options{Redis: rdb, Keys: ks, Addr: "cli:bombs"})
	h := watchHeap()
	for i, code := range []string{bombRepeat, bombNested, bombNested, bombNested, bombNested, bombNested, bombNested} {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		start := time.Now()
		g, err := cli.Eval(ctx, "cluster:0", code)
		cancel()
		if err != nil || len(g.Answers) != 1 {
			t.Fatalf("%d %s: %+v, %v", i, code, g, err)
		}
		var re *RemoteError
		if err := g.Answers[0].Err; !errors.As(err, &re) || !errors.Is(err, ErrEvalLimit) || !errors.Is(err, ErrEval) {
			t.Fatalf("%d %s: %v, want a limit RemoteError", i, code, err)
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Fatalf("%d %s: answered after %v with a 1 s timeout", i, code, el)
		}
		t.Logf("%s: %v after %v", code, g.Answers[0].Err, time.Since(start).Round(time.Millisecond))
		pctx, pcancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err = cli.Call(pctx, "cluster:0", OpPing, nil)
		pcancel()
		if err != nil {
			t.Fatalf("ping after %s: %v", code, err)
		}
	}
	if grew := h.growth(); grew > 2*DefaultEvalMaxMemory {
		t.Fatalf("heap grew by %d MiB", grew>>20)
	}
	// The caller's deadline applies too: with 1.5 s to live, the node
	// stops in time to say why.
	ctx, cancel := context.WithTimeout(context.Background(), 1500*time.Millisecond)
	defer cancel()
	if _, err := cli.Call(ctx, "cluster:0", OpEval, []byte(bombNested)); !errors.Is(err, ErrEvalLimit) {
		t.Fatalf("%v, want a limit error before the caller's deadline", err)
	}
	waitNoEvaluation(t)
	out, err := cli.Call(ctxT(t, 5*time.Second), "cluster:0", OpEval, []byte(`sum(1..100)`))
	if err != nil || string(out) != "5050" {
		t.Fatalf("after: %s, %v", out, err)
	}
}

// FuzzEval evaluates arbitrary expressions under small limits: none may
// panic the process, run past its deadline, or grow the heap past a few
// budgets.
func FuzzEval(f *testing.F) {
	for _, s := range []string{
		"1 + 2", bombRepeat, bombNested, `map(1..5, # * 2)`, `{"a": [1, 2]}`, `toJSON(names)`,
		`let a = 1..100; flatten(map(a, a))`, `join(names, repeat(",", 9))`, `reduce(1..9, #acc + "x", "")`,
		`sortBy(shards, .guilds, "desc")`, `split(repeat("ab", 99), "")`, `fromJSON("[[[[1]]]]")`,
		`double(guilds) > 5 ? "a" + "b" : string(1..3)`, `groupBy(1..9, # % 3)[0]`, `uniq(concat(1..4, 2..6))`,
	} {
		f.Add(s)
	}
	e := testEnv()
	lim := limits(EvalLimits{MaxMemory: 4 << 20, Timeout: 100 * time.Millisecond, MaxNodes: 200})
	f.Fuzz(func(t *testing.T, code string) {
		type result struct {
			out []byte
			err error
		}
		ch := make(chan result, 1)
		go func() {
			out, err := e.evaluate(context.Background(), code, lim)
			ch <- result{out, err}
		}()
		var out []byte
		var err error
		select {
		case r := <-ch:
			out, err = r.out, r.err
		case <-time.After(5 * time.Second):
			buf := make([]byte, 1<<20)
			t.Fatalf("%q still running after 5s:\n%s", code, buf[:runtime.Stack(buf, true)])
		}
		if err != nil && !errors.Is(err, ErrEval) {
			t.Fatalf("%q: %v does not wrap ErrEval", code, err)
		}
		if int64(len(out)) > lim.MaxMemory {
			t.Fatalf("%q: %d bytes of result", code, len(out))
		}
		if h := readHeap(); h.objects > max(h.goal, 64<<20)+8*lim.MaxMemory {
			t.Fatalf("%q: heap at %d MiB", code, h.objects>>20)
		}
	})
}
