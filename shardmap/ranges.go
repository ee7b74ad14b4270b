package shardmap

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
)

// FormatRanges writes shard ids compactly as ranges, sorted: "0-3,8,10-11".
// No ids is "". The launcher hands a cluster its shards in this form, and
// megane-cli and the logs show them so.
func FormatRanges(shards []int) string {
	s := slices.Clone(shards)
	slices.Sort(s)
	var b strings.Builder
	for i := 0; i < len(s); {
		j := i
		for j+1 < len(s) && s[j+1] == s[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(s[i]))
		if j > i {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(s[j]))
		}
		i = j + 1
	}
	return b.String()
}

// ParseRanges reads what FormatRanges writes. It fails on an empty list,
// a negative id or a range that runs backwards.
func ParseRanges(v string) ([]int, error) {
	var out []int
	for part := range strings.SplitSeq(v, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := strconv.Atoi(lo)
		if err != nil || a < 0 {
			return nil, fmt.Errorf("shardmap: bad shard %q in %q", part, v)
		}
		b := a
		if isRange {
			if b, err = strconv.Atoi(hi); err != nil || b < a {
				return nil, fmt.Errorf("shardmap: bad shard range %q in %q", part, v)
			}
		}
		for i := a; i <= b; i++ {
			out = append(out, i)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("shardmap: empty shard list")
	}
	return out, nil
}
