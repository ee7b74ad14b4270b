package shardmap

import (
	"slices"
	"testing"
)

func TestFormatRanges(t *testing.T) {
	for _, tt := range []struct {
		in   []int
		want string
	}{
		{nil, ""}, {[]int{0}, "0"}, {[]int{0, 1, 2, 5, 7, 8}, "0-2,5,7-8"}, {[]int{8, 0, 2, 1, 3}, "0-3,8"},
	} {
		if got := FormatRanges(tt.in); got != tt.want {
			t.Errorf("FormatRanges(%v) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

func TestRangesRoundTrip(t *testing.T) {
	for _, in := range []string{"0", "0-3", "0-3,8,10-11"} {
		s, err := ParseRanges(in)
		if err != nil || FormatRanges(s) != in {
			t.Errorf("%q → %v (%v) → %q", in, s, err, FormatRanges(s))
		}
	}
	if s, err := ParseRanges(" 1, 3-4"); err != nil || !slices.Equal(s, []int{1, 3, 4}) {
		t.Errorf("ParseRanges with spaces = %v, %v", s, err)
	}
	for _, bad := range []string{"", "a", "3-1", "-1", "1,,2"} {
		if _, err := ParseRanges(bad); err == nil {
			t.Errorf("ParseRanges(%q) accepted", bad)
		}
	}
}
