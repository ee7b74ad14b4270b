package launcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// ErrTokenRejected is returned when Discord answers GET /gateway/bot with
// 401: the token is wrong or was reset.
var ErrTokenRejected = errors.New("launcher: Discord rejected the token (401)")

// gatewayBot is the answer of GET /gateway/bot.
type gatewayBot struct {
	URL               string `json:"url"`
	Shards            int    `json:"shards"`
	SessionStartLimit struct {
		Total          int   `json:"total"`
		Remaining      int   `json:"remaining"`
		ResetAfter     int64 `json:"reset_after"`
		MaxConcurrency int   `json:"max_concurrency"`
	} `json:"session_start_limit"`
}

// fetchGatewayBot asks Discord (or the proxy or fake at restURL) for the
// recommended shard count, the gateway URL and the session start limit.
func fetchGatewayBot(ctx context.Context, client *http.Client, restURL, token string) (gatewayBot, error) {
	var gb gatewayBot
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, restURL+"/gateway/bot", nil)
	if err != nil {
		return gb, fmt.Errorf("launcher: GET /gateway/bot: %w", err)
	}
	req.Header.Set("Authorization", "Bot "+token)
	req.Header.Set("User-Agent", "DiscordBot (https://github.com/megane-go/megane, 0)")
	resp, err := client.Do(req)
	if err != nil {
		return gb, fmt.Errorf("launcher: GET %s/gateway/bot: %w", restURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return gb, fmt.Errorf("launcher: GET /gateway/bot: read: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return gb, ErrTokenRejected
	case resp.StatusCode != http.StatusOK:
		return gb, fmt.Errorf("launcher: GET %s/gateway/bot: %s: %s", restURL, resp.Status, strings.TrimSpace(string(body)))
	}
	if err := json.Unmarshal(body, &gb); err != nil {
		return gb, fmt.Errorf("launcher: GET /gateway/bot: decode: %w", err)
	}
	if gb.Shards < 1 || gb.SessionStartLimit.MaxConcurrency < 1 {
		return gb, fmt.Errorf("launcher: GET /gateway/bot: implausible answer (shards %d, max_concurrency %d)",
			gb.Shards, gb.SessionStartLimit.MaxConcurrency)
	}
	return gb, nil
}

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
