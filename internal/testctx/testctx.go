// Package testctx has contexts for tests.
package testctx

import (
	"context"
	"sync"
)

// PollLimited is a context that ends after its Err has been asked n times,
// so a test can cancel a loop in the middle of its work (a loop that checks
// ctx.Err() as it goes) without racing the loop's start.
type PollLimited struct {
	context.Context
	mu     sync.Mutex
	polls  int
	done   chan struct{}
	closed bool
}

// NewPollLimited returns a context that ends at the (n+1)th call of Err.
func NewPollLimited(n int) *PollLimited {
	return &PollLimited{Context: context.Background(), polls: n, done: make(chan struct{})}
}

// Done is closed once Err has reported the end.
func (c *PollLimited) Done() <-chan struct{} { return c.done }

// Err is nil for the first n calls and context.Canceled after.
func (c *PollLimited) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.polls > 0 {
		c.polls--
		return nil
	}
	if !c.closed {
		c.closed = true
		close(c.done)
	}
	return context.Canceled
}
