// Package testwait holds the tests' one way to wait for a condition: poll
// it until it holds, and fail the test once a deadline passes, naming what
// was awaited.
package testwait

import (
	"strings"
	"testing"
	"time"
)

// Interval is how often a condition is polled.
const Interval = 25 * time.Millisecond

// For polls cond until it holds; once timeout has passed without it, it
// fails t with what, the description of the awaited condition.
func For(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	Problems(t, timeout, what, func() []string {
		if cond() {
			return nil
		}
		return []string{"not yet"}
	})
}

// Problems polls cond, which lists what is still wrong, until it returns
// nothing; once timeout has passed, it fails t with what and the last list.
func Problems(t testing.TB, timeout time.Duration, what string, cond func() []string) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		problems := cond()
		if len(problems) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s:\n  %s", timeout, what, strings.Join(problems, "\n  "))
		}
		time.Sleep(Interval)
	}
}
