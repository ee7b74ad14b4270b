package testenv

import (
	"slices"
	"testing"
	"time"
)

func TestEnv(t *testing.T) {
	t.Setenv("TT_N", "42")
	t.Setenv("TT_MS", "250")
	t.Setenv("TT_SHARDS", "0,2-3")
	t.Setenv("TT_BAD", "1,x")
	e := Env("TT_")
	if e.Int("N") != 42 || e.Int("MISSING") != 0 || e.String("N") != "42" {
		t.Errorf("Int/String = %d, %d, %q", e.Int("N"), e.Int("MISSING"), e.String("N"))
	}
	if e.Millis("MS") != 250*time.Millisecond {
		t.Errorf("Millis = %s", e.Millis("MS"))
	}
	if s, err := e.Shards("SHARDS"); err != nil || !slices.Equal(s, []int{0, 2, 3}) {
		t.Errorf("Shards = %v, %v", s, err)
	}
	if s, err := e.Shards("MISSING"); err != nil || s != nil {
		t.Errorf("Shards of nothing = %v, %v", s, err)
	}
	if _, err := e.Shards("BAD"); err == nil {
		t.Error("Shards accepted 1,x")
	}
}
