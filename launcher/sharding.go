package launcher

import "github.com/megane-go/megane/identify"

// ErrTokenRejected is returned when Discord answers GET /gateway/bot with
// 401: the token is wrong or was reset. It is identify.ErrTokenRejected.
var ErrTokenRejected = identify.ErrTokenRejected

// shardCount turns Discord's recommendation into the shard count to run.
func shardCount(recommended, guildsPerShard int, largeBot bool, maxConcurrency int) int {
	n := max(recommended, 1)
	if guildsPerShard > 0 {
		n = max((n*1000+guildsPerShard-1)/guildsPerShard, 1)
	}
	if largeBot {
		m := max(16, maxConcurrency)
		n = (n + m - 1) / m * m
	}
	return n
}

// splitShards gives each of clusters a contiguous range of shards; range
// sizes differ by at most one, and the bigger ranges come first.
func splitShards(shards, clusters int) [][]int {
	out := make([][]int, clusters)
	next := 0
	for c := range clusters {
		size := shards / clusters
		if c < shards%clusters {
			size++
		}
		out[c] = make([]int, size)
		for i := range size {
			out[c][i] = next + i
		}
		next += size
	}
	return out
}
