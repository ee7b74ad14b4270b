package identify

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

// DefaultRESTURL is Discord's REST base, which FetchGatewayInfo asks when
// given none.
const DefaultRESTURL = "https://discord.com/api/v10"

// ErrTokenRejected is returned by FetchGatewayInfo when Discord answers
// GET /gateway/bot with 401: the token is wrong or was reset.
var ErrTokenRejected = errors.New("identify: Discord rejected the token (401)")

// fetchTimeout bounds one GET /gateway/bot.
const fetchTimeout = 15 * time.Second

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

// FetchGatewayInfo asks Discord (or the proxy or fake at restURL, which
// includes the API version; empty means DefaultRESTURL) GET /gateway/bot:
// the gateway URL, the recommended shard count and the session start limit,
// as Discord gave them (MaxConcurrencyOverride is false). client nil means
// http.DefaultClient. A 401 is ErrTokenRejected; another status, a body
// that does not decode, or an answer without shards or max_concurrency is
// an error naming what came back.
func FetchGatewayInfo(ctx context.Context, client *http.Client, restURL, token string) (GatewayInfo, error) {
	if restURL == "" {
		restURL = DefaultRESTURL
	}
	if client == nil {
		client = http.DefaultClient
	}
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, restURL+"/gateway/bot", nil)
	if err != nil {
		return GatewayInfo{}, fmt.Errorf("identify: GET /gateway/bot: %w", err)
	}
	req.Header.Set("Authorization", "Bot "+token)
	req.Header.Set("User-Agent", "DiscordBot (https://github.com/megane-go/megane, 0)")
	resp, err := client.Do(req)
	if err != nil {
		return GatewayInfo{}, fmt.Errorf("identify: GET %s/gateway/bot: %w", restURL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return GatewayInfo{}, fmt.Errorf("identify: GET /gateway/bot: read: %w", err)
	}
	switch {
	case resp.StatusCode == http.StatusUnauthorized:
		return GatewayInfo{}, ErrTokenRejected
	case resp.StatusCode != http.StatusOK:
		return GatewayInfo{}, fmt.Errorf("identify: GET %s/gateway/bot: %s: %s", restURL, resp.Status, strings.TrimSpace(string(body)))
	}
	var gb gatewayBot
	if err := json.Unmarshal(body, &gb); err != nil {
		return GatewayInfo{}, fmt.Errorf("identify: GET /gateway/bot: decode: %w", err)
	}
	lim := gb.SessionStartLimit
	if gb.Shards < 1 || lim.MaxConcurrency < 1 {
		return GatewayInfo{}, fmt.Errorf("identify: GET /gateway/bot: implausible answer (shards %d, max_concurrency %d)",
			gb.Shards, lim.MaxConcurrency)
	}
	return GatewayInfo{
		URL: gb.URL, Shards: gb.Shards, MaxConcurrency: lim.MaxConcurrency,
		Total: lim.Total, Remaining: lim.Remaining,
		ResetAt: time.Now().Add(time.Duration(lim.ResetAfter) * time.Millisecond),
	}, nil
}
