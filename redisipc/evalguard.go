package redisipc

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"runtime/metrics"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/ast"
	"github.com/expr-lang/expr/file"
	"github.com/expr-lang/expr/parser/lexer"
	"github.com/expr-lang/expr/vm"
)

// How an evaluation is kept from hurting its process.
//
// expr compiles an expression to bytecode and runs it in a VM that cannot
// be interrupted from outside: loops over collections (map, filter, sum,
// …) are bytecode loops that call nothing, and several builtins allocate
// from their arguments (repeat, string +, ranges) with little or no check.
// So before compiling, a patcher rewrites the syntax tree:
//
//   - every predicate body (one loop iteration) and every function call
//     starts with a call of guardFn, which fails once the evaluation is
//     aborted: its deadline passed, or the heap sampler saw the process
//     grow past the budget;
//   - what allocates from its arguments is preceded by a call that charges
//     the size it is about to allocate to the evaluation's byte budget and
//     fails when the budget is spent: ranges (rangeFn), string + (concatFn),
//     array and map literals (chargeFn), loops and their output (loopFn);
//   - builtins that allocate from their arguments are replaced by checked
//     copies under the same names (evalbuiltins.go).
//
// A failing guard or charge returns an error, which the VM turns into a
// recovered panic and an error result, so the evaluating goroutine returns
// within one loop iteration of the abort. Values the patch needs twice are
// bound with let, which keeps the types the checker inferred.
const (
	guardFn  = "$eval.guard"
	chargeFn = "$eval.charge"
	loopFn   = "$eval.loop"
	rangeFn  = "$eval.range"
	concatFn = "$eval.concat"
	varName  = "$eval.v"
)

// Sizes charged for what the VM allocates, in bytes. They are estimates on
// the high side of what Go allocates for the value.
const (
	sizeSlot     = 16 // one element of a []any
	sizeInt      = 8  // one element of a range ([]int)
	sizeMapBase  = 320
	sizeMapEntry = 64
	sizeSliceHdr = 24
)

// scopeCost is what the VM keeps per loop started: it takes a Scope from a
// pool that only grows during a run (doubling), so a loop nested in a loop
// costs this much per inner loop started, until the evaluation ends.
var scopeCost = 2 * int64(unsafe.Sizeof(vm.Scope{}))

// Loop builtins whose output grows with their input, and the bytes they
// allocate per input element. The VM keeps a loop's accumulator (groupBy's
// map) in its pooled scope until the evaluation ends, so a groupBy inside
// a loop retains every map it built.
var loopOutput = map[string]int64{
	"map":     sizeSlot,
	"filter":  sizeSlot,
	"sortBy":  4 * sizeSlot,
	"groupBy": 4*sizeSlot + 2*sizeMapEntry,
}

// evalRun is the state of one evaluation: its limits, its byte budget and
// its abort flag.
type evalRun struct {
	lim EvalLimits
	// abort is set once, by the watchdog or by a charge past the budget.
	abort atomic.Pointer[limitError]
	// charged is the bytes charged so far. Only the evaluating goroutine
	// charges.
	charged int64
	// steps counts guard calls (evaluating goroutine only).
	steps uint64
	// heap holds the heap sampler's thresholds, set before the watchdog
	// starts and read-only after.
	heap heapLimits
}

func (r *evalRun) stop(e *limitError) { r.abort.CompareAndSwap(nil, e) }

// check returns the abort error, if any.
func (r *evalRun) check() error {
	if e := r.abort.Load(); e != nil {
		return e
	}
	return nil
}

// charge counts n bytes against the budget before they are allocated.
func (r *evalRun) charge(n int64) error {
	if e := r.abort.Load(); e != nil {
		return e
	}
	if n < 0 || n > r.lim.MaxMemory-r.charged {
		e := evalLimitf("memory budget of %s exceeded (Options.Eval.MaxMemory)", mib(r.lim.MaxMemory))
		r.stop(e)
		return r.abort.Load()
	}
	r.charged += n
	return nil
}

// remaining is the unspent budget.
func (r *evalRun) remaining() int64 { return r.lim.MaxMemory - r.charged }

// mulSize multiplies sizes, saturating instead of overflowing.
func mulSize(a, b int64) int64 {
	if a <= 0 || b <= 0 {
		return 0
	}
	if a > (1<<62)/b {
		return 1 << 62
	}
	return a * b
}

// heapSampleInterval is how often the watchdog reads the heap, for a
// builtin that runs long between guard calls; guards read it every
// heapSampleCalls calls.
const (
	heapSampleInterval = 5 * time.Millisecond
	heapSampleCalls    = 64
)

var heapMetrics = []string{"/memory/classes/heap/objects:bytes", "/gc/heap/goal:bytes", "/gc/heap/live:bytes"}

type heapSample struct{ objects, goal, live int64 }

func readHeap() heapSample {
	s := make([]metrics.Sample, len(heapMetrics))
	for i, name := range heapMetrics {
		s[i].Name = name
	}
	metrics.Read(s)
	val := func(i int) int64 {
		if s[i].Value.Kind() == metrics.KindUint64 {
			return int64(s[i].Value.Uint64())
		}
		return 0
	}
	return heapSample{objects: val(0), goal: val(1), live: val(2)}
}

// heapLimits are the heap sampler's thresholds, set when an evaluation
// starts. The heap is shared with the rest of the process and holds
// garbage until the next GC, so the sampler judges by the live heap the
// last GC found: it stops the evaluation when that grew by more than the
// budget. Between GCs the heap may hold garbage up to the GC's goal; past
// the goal plus four budgets the evaluation is stopped without waiting
// for a GC.
type heapLimits struct{ live, objects int64 }

func (r *evalRun) startHeap() {
	h := readHeap()
	r.heap = heapLimits{live: h.live + r.lim.MaxMemory, objects: max(h.objects, h.goal) + 4*r.lim.MaxMemory}
}

// sampleHeap aborts the evaluation when the heap is over its thresholds.
func (r *evalRun) sampleHeap() {
	h := readHeap()
	if h.live > r.heap.live || h.objects > r.heap.objects {
		r.stop(evalLimitf("stopped: the heap grew past the budget of %s while it ran (Options.Eval.MaxMemory)",
			mib(r.lim.MaxMemory)))
	}
}

// guard is called at every loop iteration and function call.
func (r *evalRun) guard(...any) (any, error) {
	r.steps++
	if r.steps%heapSampleCalls == 0 {
		r.sampleHeap()
	}
	return nil, r.check()
}

// watch aborts r when ctx ends or the heap is over its thresholds, and
// returns when done is closed.
func (r *evalRun) watch(ctx context.Context, capped bool, done <-chan struct{}) {
	t := time.NewTicker(heapSampleInterval)
	defer t.Stop()
	for {
		select {
		case <-done:
			return
		case <-ctx.Done():
			switch {
			case !errors.Is(ctx.Err(), context.DeadlineExceeded):
				r.stop(evalLimitf("canceled: %v", context.Cause(ctx)))
			case capped:
				r.stop(evalLimitf("stopped after %s (Options.Eval.Timeout)", r.lim.Timeout))
			default:
				r.stop(evalLimitf("stopped at the caller's deadline"))
			}
			return
		case <-t.C:
			r.sampleHeap()
		}
	}
}

// checkSource refuses, before parsing, an expression whose token count
// exceeds what MaxNodes allows: the parser recurses once per nesting level
// without a limit of its own, so "[[[[…" a megabyte deep would overflow
// the goroutine stack, which kills the process.
func checkSource(code string, maxNodes int) error {
	maxTokens := 4*maxNodes + 16
	if len(code) > 64*maxTokens && len(code) > 1<<20 {
		return evalLimitf("expression of %d bytes is too long", len(code))
	}
	lx := lexer.New()
	lx.Reset(file.NewSource(code))
	for n := 0; ; n++ {
		if n > maxTokens {
			return evalLimitf("expression has more than %d tokens (Options.Eval.MaxNodes is %d)", maxTokens, maxNodes)
		}
		tok, err := lx.Next()
		if err != nil {
			return nil // the parser reports it
		}
		if tok.Kind == lexer.EOF {
			return nil
		}
	}
}

// compile compiles code for r: size-limited, patched, with the checked
// builtins, without compile-time evaluation (the optimizer would run
// constant parts, ranges included, outside the budget).
func (r *evalRun) compile(code string, env map[string]any) (prog *vm.Program, err error) {
	defer func() {
		// expr's checker and compiler panic on some malformed trees.
		if v := recover(); v != nil {
			prog, err = nil, fmt.Errorf("%v", v)
		}
	}()
	if err := checkSource(code, r.lim.MaxNodes); err != nil {
		return nil, err
	}
	opts := []expr.Option{
		expr.Env(env),
		expr.Optimize(false),
		expr.MaxNodes(uint(r.lim.MaxNodes)),
		expr.Patch(&guardPatcher{}),
		expr.Function(guardFn, r.guard),
		expr.Function(chargeFn, func(args ...any) (any, error) { return nil, r.charge(toInt64(args[0])) }),
		expr.Function(loopFn, r.loop),
		expr.Function(rangeFn, r.rangeCharge),
		expr.Function(concatFn, r.concatCharge),
	}
	opts = append(opts, r.checkedBuiltins()...)
	return expr.Compile(code, opts...)
}

// run evaluates prog. A limit error comes back as itself, without the VM's
// source excerpt around it.
func (r *evalRun) run(prog *vm.Program, env map[string]any) (any, error) {
	machine := vm.VM{MemoryBudget: uint(r.lim.MaxMemory / sizeInt)}
	out, err := machine.Run(prog, env)
	if le := r.abort.Load(); le != nil {
		return nil, le
	}
	if err != nil {
		var le *limitError
		if errors.As(err, &le) {
			return nil, le
		}
		return nil, err
	}
	return out, nil
}

// loop charges a loop about to start over its collection (the first
// argument) for the builtin named by the second.
func (r *evalRun) loop(args ...any) (any, error) {
	n := int64(collectionLen(args[0]))
	cost := scopeCost + mulSize(n, loopOutput[args[1].(string)])
	return nil, r.charge(cost)
}

// rangeCharge charges the range a..b about to be built.
func (r *evalRun) rangeCharge(args ...any) (any, error) {
	a, b := toInt64(args[0]), toInt64(args[1])
	if b < a {
		return nil, r.charge(0)
	}
	if b-a < 0 || b-a >= 1<<58 { // overflow, or far beyond any budget
		return nil, r.charge(-1)
	}
	return nil, r.charge(mulSize(b-a+1, sizeInt) + sizeSliceHdr)
}

// concatCharge charges a + b when both are strings.
func (r *evalRun) concatCharge(args ...any) (any, error) {
	a, aok := deref(args[0]).(string)
	b, bok := deref(args[1]).(string)
	if !aok || !bok {
		return nil, r.check()
	}
	return nil, r.charge(int64(len(a)) + int64(len(b)))
}

func toInt64(v any) int64 {
	switch x := deref(v).(type) {
	case int:
		return int64(x)
	case int64:
		return x
	case int32:
		return int64(x)
	case int16:
		return int64(x)
	case int8:
		return int64(x)
	case uint:
		return saturate(uint64(x))
	case uint64:
		return saturate(x)
	case uint32:
		return int64(x)
	case uint16:
		return int64(x)
	case uint8:
		return int64(x)
	case float64:
		return int64(x)
	case float32:
		return int64(x)
	}
	return 0
}

func saturate(x uint64) int64 {
	if x > 1<<62 {
		return 1 << 62
	}
	return int64(x)
}

// deref follows pointers, as expr does before calling a builtin.
func deref(v any) any {
	if v == nil {
		return nil
	}
	rv := reflect.ValueOf(v)
	if rv.Kind() != reflect.Pointer {
		return v
	}
	for rv.Kind() == reflect.Pointer || rv.Kind() == reflect.Interface {
		if rv.IsNil() {
			return nil
		}
		rv = rv.Elem()
	}
	return rv.Interface()
}

// collectionLen is the length of an array, slice, map or string, else 0.
func collectionLen(v any) int {
	switch x := v.(type) {
	case []any:
		return len(x)
	case []int:
		return len(x)
	case string:
		return len(x)
	case nil:
		return 0
	}
	rv := reflect.ValueOf(v)
	for rv.Kind() == reflect.Pointer || rv.Kind() == reflect.Interface {
		if rv.IsNil() {
			return 0
		}
		rv = rv.Elem()
	}
	switch rv.Kind() {
	case reflect.Array, reflect.Slice, reflect.Map, reflect.String, reflect.Chan:
		return rv.Len()
	}
	return 0
}

// guardPatcher rewrites the syntax tree as described at the top of this
// file. ast.Walk visits children before their parent, so a node is wrapped
// after everything inside it; the wrapper itself is not visited again.
type guardPatcher struct{ vars int }

func (p *guardPatcher) Visit(node *ast.Node) {
	switch n := (*node).(type) {
	case *ast.PredicateNode:
		n.Node = seq(call(guardFn), n.Node)
	case *ast.CallNode:
		if id, ok := n.Callee.(*ast.IdentifierNode); ok && len(id.Value) > 0 && id.Value[0] == '$' {
			return
		}
		ast.Patch(node, seq(call(guardFn), n))
	case *ast.BuiltinNode:
		if len(n.Arguments) < 2 {
			return
		}
		if _, ok := n.Arguments[1].(*ast.PredicateNode); !ok {
			return
		}
		// let v = collection; (loop(v, name); name(v, predicate…))
		v := p.newVar()
		coll := n.Arguments[0]
		n.Arguments[0] = &ast.IdentifierNode{Value: v}
		ast.Patch(node, &ast.VariableDeclaratorNode{Name: v, Value: coll,
			Expr: seq(call(loopFn, &ast.IdentifierNode{Value: v}, &ast.StringNode{Value: n.Name}), n)})
	case *ast.BinaryNode:
		switch {
		case n.Operator == "..":
			p.bindPair(node, n, rangeFn)
		case n.Operator == "+" && !(isNumber(n.Left) && isNumber(n.Right)):
			p.bindPair(node, n, concatFn)
		}
	case *ast.ArrayNode:
		ast.Patch(node, seq(call(chargeFn, &ast.IntegerNode{Value: sizeSliceHdr + sizeSlot*len(n.Nodes)}), n))
	case *ast.MapNode:
		ast.Patch(node, seq(call(chargeFn, &ast.IntegerNode{Value: sizeMapBase + sizeMapEntry*len(n.Pairs)}), n))
	}
}

// bindPair rewrites "l op r" as "let a = l; let b = r; (fn(a, b); a op b)",
// so fn sees both operands before the operation allocates.
func (p *guardPatcher) bindPair(node *ast.Node, n *ast.BinaryNode, fn string) {
	a, b := p.newVar(), p.newVar()
	left, right := n.Left, n.Right
	n.Left, n.Right = &ast.IdentifierNode{Value: a}, &ast.IdentifierNode{Value: b}
	ast.Patch(node, &ast.VariableDeclaratorNode{Name: a, Value: left,
		Expr: &ast.VariableDeclaratorNode{Name: b, Value: right,
			Expr: seq(call(fn, &ast.IdentifierNode{Value: a}, &ast.IdentifierNode{Value: b}), n)}})
}

func (p *guardPatcher) newVar() string {
	p.vars++
	return fmt.Sprintf("%s%d", varName, p.vars)
}

func isNumber(n ast.Node) bool {
	t := n.Type()
	if t == nil {
		return false
	}
	switch t.Kind() {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
		reflect.Float32, reflect.Float64:
		return true
	}
	return false
}

func call(fn string, args ...ast.Node) ast.Node {
	return &ast.CallNode{Callee: &ast.IdentifierNode{Value: fn}, Arguments: args}
}

func seq(nodes ...ast.Node) ast.Node { return &ast.SequenceNode{Nodes: nodes} }
