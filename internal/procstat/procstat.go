// Package procstat reads figures about the running process. The statistics
// record (package stats) and the eval environment (package redisipc) report
// the same figures, so they read them here, once.
package procstat

import (
	"fmt"
	"os"
	"runtime"
)

// RSSBytes returns the process's resident set size, read from
// /proc/self/statm (Linux); 0 where that cannot be read.
func RSSBytes() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0
	}
	var size, resident uint64
	if _, err := fmt.Sscan(string(b), &size, &resident); err != nil {
		return 0
	}
	return resident * uint64(os.Getpagesize())
}

// Memory returns the process's memory figures as the eval environment's
// memory value: rss_bytes (0 where unknown) and the Go runtime's heap_alloc,
// heap_inuse, heap_sys, sys and num_gc.
func Memory() map[string]any {
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return map[string]any{
		"rss_bytes": RSSBytes(), "heap_alloc": m.HeapAlloc, "heap_inuse": m.HeapInuse,
		"heap_sys": m.HeapSys, "sys": m.Sys, "num_gc": m.NumGC,
	}
}
