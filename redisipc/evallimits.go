package redisipc

import (
	"fmt"
	"time"
)

// Defaults of EvalLimits.
const (
	DefaultEvalTimeout       = 5 * time.Second
	DefaultEvalMaxMemory     = 64 << 20
	DefaultEvalMaxNodes      = 2000
	DefaultEvalMaxConcurrent = 2
)

// EvalLimits bounds what evaluating expressions (OpEval, Node.Eval) may
// cost the process that evaluates them. A caller can send any expression,
// so none of them may take the process down: every evaluation runs under a
// deadline and a memory budget, both enforced while it runs, and one that
// exceeds either is stopped and answered with an error matching
// ErrEvalLimit (and ErrEval). The zero value is the defaults below.
type EvalLimits struct {
	// Disabled refuses every evaluation on this node. The launcher sets it
	// on its own node unless configured otherwise. Default false.
	Disabled bool

	// Timeout caps how long one evaluation runs; the caller's deadline
	// stops it earlier. At the deadline the evaluation is stopped at its
	// next step (every loop iteration and function call is one), not left
	// running. Default DefaultEvalTimeout (5 s).
	Timeout time.Duration

	// MaxMemory is the byte budget of one evaluation. What the expression
	// language allocates from its arguments (ranges, repeat, string
	// concatenation, array and map literals, the output of map, filter,
	// groupBy and sortBy, toJSON, split, join, flatten, …) is counted
	// before it is allocated and refused past the budget; the JSON result
	// is measured before it is encoded. As a backstop the process heap is
	// sampled while the evaluation runs, and the evaluation is stopped when
	// the heap grows past the GC's goal by more than MaxMemory. Default
	// DefaultEvalMaxMemory (64 MiB).
	MaxMemory int64

	// MaxNodes bounds the size of an expression in syntax-tree nodes;
	// larger expressions are refused before they are compiled.
	// Default DefaultEvalMaxNodes (2000).
	MaxNodes int

	// MaxConcurrent bounds evaluations running at once on this node; more
	// are refused at once with an error saying the node is busy, so a
	// burst of expensive expressions cannot stack up. Default
	// DefaultEvalMaxConcurrent (2).
	MaxConcurrent int
}

func (l *EvalLimits) setDefaults() {
	if l.Timeout <= 0 {
		l.Timeout = DefaultEvalTimeout
	}
	if l.MaxMemory <= 0 {
		l.MaxMemory = DefaultEvalMaxMemory
	}
	if l.MaxNodes <= 0 {
		l.MaxNodes = DefaultEvalMaxNodes
	}
	if l.MaxConcurrent <= 0 {
		l.MaxConcurrent = DefaultEvalMaxConcurrent
	}
}

// limitError is an evaluation refused or stopped by EvalLimits. It matches
// ErrEvalLimit and ErrEval.
type limitError struct{ reason string }

func evalLimitf(format string, args ...any) *limitError {
	return &limitError{reason: fmt.Sprintf(format, args...)}
}

func (e *limitError) Error() string { return "redisipc: eval limit: " + e.reason }

func (e *limitError) Is(target error) bool { return target == ErrEvalLimit || target == ErrEval }

// mib formats a byte count for messages.
func mib(n int64) string {
	if n%(1<<20) == 0 {
		return fmt.Sprintf("%d MiB", n>>20)
	}
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
