package procstat

import (
	"runtime"
	"testing"
)

func TestRSSBytes(t *testing.T) {
	rss := RSSBytes()
	if runtime.GOOS == "linux" && rss == 0 {
		t.Fatal("RSSBytes = 0 on Linux")
	}
}

func TestMemoryFields(t *testing.T) {
	m := Memory()
	for _, k := range []string{"rss_bytes", "heap_alloc", "heap_inuse", "heap_sys", "sys", "num_gc"} {
		if _, ok := m[k]; !ok {
			t.Errorf("Memory() has no %q", k)
		}
	}
}
