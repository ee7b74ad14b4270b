package cluster

import (
	"strconv"
	"testing"
)

func TestEventCountsBoundTheTypes(t *testing.T) {
	var e eventCounts
	e.add("MESSAGE_CREATE")
	e.add("MESSAGE_CREATE")
	for i := range maxEventTypes + 10 {
		e.add("MADE_UP_" + strconv.Itoa(i))
	}
	got := e.snapshot()
	if got["MESSAGE_CREATE"] != 2 {
		t.Errorf("MESSAGE_CREATE = %d, want 2", got["MESSAGE_CREATE"])
	}
	if len(got) != maxEventTypes+1 || got["other"] != 11 {
		t.Errorf("%d types, other = %d; want %d types and 11 others", len(got), got["other"], maxEventTypes+1)
	}
}
