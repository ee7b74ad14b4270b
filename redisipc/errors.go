package redisipc

import (
	"errors"
	"fmt"
)

// Sentinel errors. They are wrapped with %w, so test them with errors.Is.
var (
	// ErrNoResponders means no live node serves the target address, so the
	// request was not sent.
	ErrNoResponders = errors.New("redisipc: no responders")
	// ErrTimeout means the call's deadline passed before the answer arrived.
	// The request may or may not have been handled.
	ErrTimeout = errors.New("redisipc: timeout")
	// ErrPayloadTooLarge means a payload exceeded Options.MaxPayload. The
	// sender refuses it; a receiver with a smaller limit answers with it.
	ErrPayloadTooLarge = errors.New("redisipc: payload too large")
	// ErrUnknownOp means the target has no handler for the op.
	ErrUnknownOp = errors.New("redisipc: unknown op")
	// ErrClosed means the node was closed.
	ErrClosed = errors.New("redisipc: node closed")
	// ErrBadEnvelope means a message could not be decoded.
	ErrBadEnvelope = errors.New("redisipc: bad envelope")
	// ErrEval means an expression failed to compile or run.
	ErrEval = errors.New("redisipc: eval failed")
	// ErrEvalLimit means an evaluation was refused or stopped by the
	// target's Options.Eval: eval disabled there, too many evaluations
	// running, an expression too large, its deadline passed or its memory
	// budget spent. An error matching it matches ErrEval too.
	ErrEvalLimit = errors.New("redisipc: eval limit")
	// ErrBadAddress means an address or broadcast target is not well formed.
	ErrBadAddress = errors.New("redisipc: bad address")
	// ErrInvalidOptions is returned (wrapped) by New for unusable Options;
	// an unusable address or instance also matches ErrBadAddress.
	ErrInvalidOptions = errors.New("redisipc: invalid options")
	// ErrNoShardMap means a guild could not be routed because the shard map
	// in Redis is missing or incomplete.
	ErrNoShardMap = errors.New("redisipc: no shard map")
)

// Codes carried by error replies. They let the caller's errors.Is see the
// sentinel the remote side meant, across the process boundary.
const (
	codeHandler  = "handler"
	codeUnknown  = "unknown_op"
	codeTooLarge = "too_large"
	codeBad      = "bad_request"
	codeEval     = "eval"
	codeLimit    = "eval_limit"
	codePanic    = "panic"
)

// RemoteError is how a handler's error (or the remote side's refusal) comes
// back to the caller. errors.Is(err, ErrUnknownOp), ErrPayloadTooLarge,
// ErrEval and ErrEvalLimit match when the remote side reported that
// condition.
type RemoteError struct {
	// From is the address of the node that answered.
	From string
	// Message is the remote error's text.
	Message string
	// Code classifies the error: "handler", "unknown_op", "too_large",
	// "bad_request", "eval", "eval_limit" or "panic".
	Code string
}

// Error implements error.
func (e *RemoteError) Error() string {
	return fmt.Sprintf("redisipc: %s: %s", e.From, e.Message)
}

// Is reports whether the remote condition corresponds to target.
func (e *RemoteError) Is(target error) bool {
	switch target {
	case ErrUnknownOp:
		return e.Code == codeUnknown
	case ErrPayloadTooLarge:
		return e.Code == codeTooLarge
	case ErrEval:
		return e.Code == codeEval || e.Code == codeLimit
	case ErrEvalLimit:
		return e.Code == codeLimit
	case ErrBadEnvelope:
		return e.Code == codeBad
	}
	return false
}
