package main

import (
	"context"
	"os"
	"runtime"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/keyspace"
)

// loadAvg is the 1-minute load average; a busy machine inflates every
// latency, so the table records it.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return "?"
	}
	return f[0]
}

func runtimeProcs() int { return runtime.GOMAXPROCS(0) }

func redisVersion(ctx context.Context, rdb redis.UniversalClient) string {
	info, err := rdb.Info(ctx, "server").Result()
	if err != nil {
		return "?"
	}
	for _, l := range strings.Split(info, "\n") {
		if v, ok := strings.CutPrefix(strings.TrimSpace(l), "redis_version:"); ok {
			return v
		}
	}
	return "?"
}

func purge(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace) {
	testredis.Purge(ctx, rdb, ks)
}
