package redisipc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/expr-lang/expr/parser"
	"github.com/megane-go/megane/internal/procstat"
)

// Built-in ops every node answers. The "$" prefix is reserved, so user ops
// can never collide with them.
const (
	// OpPing answers a PingReply.
	OpPing = "$ping"
	// OpInfo answers the node's NodeInfo plus the ops it serves.
	OpInfo = "$info"
	// OpStats answers a StatsReply: the node's counters, completed by its
	// SetStats function.
	OpStats = "$stats"
	// OpEval evaluates the payload as an expression (see Eval).
	OpEval = "$eval"
)

// EvalEnv is the environment expressions are evaluated against: the
// values and functions a process exposes. Every node starts with addr,
// instance, kind, pid, host, started_at, uptime_seconds (also as uptime),
// goroutines and memory ({rss_bytes, heap_alloc, heap_inuse, heap_sys,
// sys, num_gc}); a cluster node also gets cluster_id. Clusters add their shard ids and statuses and guild, user and
// channel counts (by convention shard_ids, shards, guilds, users,
// channels); users add their own.
//
// Expressions can only read what is here and call the functions registered
// here; they cannot change the process otherwise.
type EvalEnv struct {
	mu   sync.RWMutex
	vals map[string]any
	dyn  map[string]func() any
}

func newEvalEnv(n *Node) *EvalEnv {
	e := &EvalEnv{vals: map[string]any{}, dyn: map[string]func() any{}}
	e.Set("addr", n.addr)
	e.Set("instance", n.inst)
	e.Set("kind", n.kind)
	e.Set("pid", os.Getpid())
	e.Set("host", n.host)
	e.Set("started_at", n.started.UnixMilli())
	if id, ok := strings.CutPrefix(n.addr, KindCluster+":"); ok {
		if v, err := strconv.Atoi(id); err == nil {
			e.Set("cluster_id", v)
		}
	}
	uptime := func() any { return time.Since(n.started).Seconds() }
	e.Provide("uptime_seconds", uptime)
	e.Provide("uptime", uptime) // the name clusters documented first
	e.Provide("goroutines", func() any { return runtime.NumGoroutine() })
	e.Provide("memory", func() any { return procstat.Memory() })
	return e
}

// EvalEnv returns the node's eval environment, for adding values and
// functions.
func (n *Node) EvalEnv() *EvalEnv { return n.env }

// Set exposes v under name. A func value becomes callable from
// expressions; it is the only way an expression can act on the process.
func (e *EvalEnv) Set(name string, v any) {
	e.mu.Lock()
	delete(e.dyn, name)
	e.vals[name] = v
	e.mu.Unlock()
}

// Provide exposes the result of f under name, called afresh for every
// evaluation, for values that change (shard statuses, counts).
func (e *EvalEnv) Provide(name string, f func() any) {
	e.mu.Lock()
	delete(e.vals, name)
	e.dyn[name] = f
	e.mu.Unlock()
}

// Delete removes name.
func (e *EvalEnv) Delete(name string) {
	e.mu.Lock()
	delete(e.vals, name)
	delete(e.dyn, name)
	e.mu.Unlock()
}

// Names returns the names currently exposed.
func (e *EvalEnv) Names() []string {
	e.mu.RLock()
	defer e.mu.RUnlock()
	out := make([]string, 0, len(e.vals)+len(e.dyn))
	for k := range e.vals {
		out = append(out, k)
	}
	for k := range e.dyn {
		out = append(out, k)
	}
	return out
}

func (e *EvalEnv) snapshot() map[string]any {
	e.mu.RLock()
	m := make(map[string]any, len(e.vals)+len(e.dyn))
	for k, v := range e.vals {
		m[k] = v
	}
	dyn := make(map[string]func() any, len(e.dyn))
	for k, f := range e.dyn {
		dyn[k] = f
	}
	e.mu.RUnlock()
	for k, f := range dyn {
		m[k] = f()
	}
	return m
}

// evaluate compiles and runs code against the environment, within lim,
// and returns the result as JSON. Every failure wraps ErrEval, so it
// reaches the caller as a RemoteError with code "eval" (or "eval_limit"
// when lim refused or stopped it) rather than as a crash. The evaluation
// ends by ctx's deadline, capped by lim.Timeout.
func (e *EvalEnv) evaluate(ctx context.Context, code string, lim EvalLimits) ([]byte, error) {
	r := &evalRun{lim: lim}
	// Stop a little before the caller's deadline, so that the caller
	// hears why rather than timing out.
	timeout, capped := lim.Timeout, true
	if dl, ok := ctx.Deadline(); ok {
		left := time.Until(dl)
		if left -= min(left/10, 250*time.Millisecond); left < timeout {
			timeout, capped = left, false
		}
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	r.startHeap()
	done := make(chan struct{})
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		r.watch(ctx, capped, done)
	}()
	// The watchdog is gone when evaluate returns.
	defer func() { close(done); <-watched }()

	env := e.snapshot()
	prog, err := r.compile(code, env)
	if err != nil {
		if le := (*limitError)(nil); errors.As(err, &le) {
			return nil, le
		}
		return nil, fmt.Errorf("%w: compile: %w", ErrEval, err)
	}
	out, err := r.run(prog, env)
	if err != nil {
		if le := (*limitError)(nil); errors.As(err, &le) {
			return nil, le
		}
		return nil, fmt.Errorf("%w: run: %w", ErrEval, err)
	}
	// Encoding can blow up too: an array holding one large array many
	// times is cheap to build and huge to print.
	if size := r.sizeOf(out, false); size > r.remaining() {
		return nil, evalLimitf("result of about %d bytes as JSON exceeds the memory budget of %s (Options.Eval.MaxMemory)", size, mib(lim.MaxMemory))
	}
	b, err := json.Marshal(out)
	if err != nil {
		return nil, fmt.Errorf("%w: result is not JSON: %w", ErrEval, err)
	}
	return b, nil
}

// Eval evaluates expression on every live target (see Gather for targets)
// against each target's EvalEnv, and gathers the JSON results. A syntax
// error is reported at once, wrapping ErrEval; errors that depend on the
// target's environment (an unknown name) come back per answer as a
// RemoteError matching ErrEval.
//
// The language is expr-lang/expr: arithmetic, comparisons, maps, arrays,
// closures over collections (filter, map, sum, ...), and calls of the
// functions in the environment. Each target evaluates within its own
// Options.Eval; one that refuses or stops the expression answers with a
// RemoteError matching ErrEvalLimit (and ErrEval).
func (n *Node) Eval(ctx context.Context, target, expression string) (*Gathered, error) {
	if err := checkSource(expression, n.opts.Eval.MaxNodes); err != nil {
		return nil, err
	}
	if _, err := parser.Parse(expression); err != nil {
		return nil, fmt.Errorf("%w: compile: %w", ErrEval, err)
	}
	return n.Gather(ctx, target, OpEval, []byte(expression))
}

func (n *Node) registerBuiltins() {
	n.handle(OpPing, func(ctx context.Context, req *Request) ([]byte, error) {
		return json.Marshal(PingReply{Version: PingVersion, Addr: n.addr, Instance: n.inst})
	})
	n.handle(OpInfo, func(ctx context.Context, req *Request) ([]byte, error) {
		n.mu.RLock()
		ops := make([]string, 0, len(n.handlers))
		for op := range n.handlers {
			if !strings.HasPrefix(op, "$") {
				ops = append(ops, op)
			}
		}
		n.mu.RUnlock()
		return json.Marshal(struct {
			NodeInfo
			Ops []string `json:"ops"`
		}{NodeInfo{Instance: n.inst, Addr: n.addr, Kind: n.kind, PID: os.Getpid(), Host: n.host,
			Group: n.opts.Group, StartedAt: n.started}, ops})
	})
	n.handle(OpStats, func(ctx context.Context, req *Request) ([]byte, error) {
		return json.Marshal(n.Stats(ctx))
	})
	n.handle(OpEval, n.handleEval)
}

// handleEval answers OpEval within Options.Eval.
func (n *Node) handleEval(ctx context.Context, req *Request) ([]byte, error) {
	lim := n.opts.Eval
	if lim.Disabled {
		return nil, evalLimitf("eval is disabled on %s", n.addr)
	}
	select {
	case n.evalSem <- struct{}{}:
		defer func() { <-n.evalSem }()
	default:
		return nil, evalLimitf("%s is busy: %d evaluations running (Options.Eval.MaxConcurrent)", n.addr, lim.MaxConcurrent)
	}
	return n.env.evaluate(ctx, string(req.Payload), lim)
}
