package identify

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
)

// ErrSessionStartLimit is returned (wrapped, with the numbers and the reset
// time) by CheckBudget when the planned IDENTIFYs would eat into the reserve
// of the daily session_start_limit. Discord resets a bot's token when the
// limit runs out, so refusing to start is the cheaper failure.
var ErrSessionStartLimit = errors.New("identify: session start limit would be exceeded")

// ErrNoGatewayInfo is returned (wrapped) by LoadGatewayInfo when nothing has
// been saved yet.
var ErrNoGatewayInfo = errors.New("identify: no gateway info saved")

// budgetResetPeriod is how far ahead the next reset is assumed after a reset
// passed without fresh numbers from Discord: the limit is per 24 hours.
const budgetResetPeriod = 24 * time.Hour

// GatewayInfo is what GET /gateway/bot told the bot, kept in the
// keyspace.Gateway() hash so every process sees the same numbers.
type GatewayInfo struct {
	// URL is the gateway URL to dial (no query string).
	URL string
	// Shards is the shard count in use.
	Shards int
	// MaxConcurrency is the effective number of identify buckets, after any
	// override.
	MaxConcurrency int
	// Total is session_start_limit.total.
	Total int
	// Remaining is session_start_limit.remaining; every IDENTIFY through a
	// Limiter decrements it.
	Remaining int
	// ResetAt is when Remaining goes back to Total.
	ResetAt time.Time
	// MaxConcurrencyOverride records that MaxConcurrency was set by the
	// operator instead of taken from Discord, so tools can show it.
	MaxConcurrencyOverride bool
}

// Hash field names of keyspace.Gateway().
const (
	fieldURL            = "url"
	fieldShards         = "shards"
	fieldMaxConcurrency = "max_concurrency"
	fieldTotal          = "total"
	fieldRemaining      = "remaining"
	fieldResetAt        = "reset_at"
	fieldOverride       = "max_concurrency_override"
)

// SaveGatewayInfo writes info to keyspace.Gateway(), replacing the fields it
// names.
func SaveGatewayInfo(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace, info GatewayInfo) error {
	override := "0"
	if info.MaxConcurrencyOverride {
		override = "1"
	}
	var resetAt int64
	if !info.ResetAt.IsZero() {
		resetAt = info.ResetAt.UnixMilli()
	}
	err := rdb.HSet(ctx, ks.Gateway(),
		fieldURL, info.URL,
		fieldShards, info.Shards,
		fieldMaxConcurrency, info.MaxConcurrency,
		fieldTotal, info.Total,
		fieldRemaining, info.Remaining,
		fieldResetAt, resetAt,
		fieldOverride, override,
	).Err()
	if err != nil {
		return fmt.Errorf("identify: save gateway info: %w", err)
	}
	return nil
}

// LoadGatewayInfo reads keyspace.Gateway(). It returns ErrNoGatewayInfo
// (wrapped) when the hash does not exist.
func LoadGatewayInfo(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace) (GatewayInfo, error) {
	m, err := rdb.HGetAll(ctx, ks.Gateway()).Result()
	if err != nil {
		return GatewayInfo{}, fmt.Errorf("identify: load gateway info: %w", err)
	}
	if len(m) == 0 {
		return GatewayInfo{}, fmt.Errorf("%w at %s", ErrNoGatewayInfo, ks.Gateway())
	}
	info := GatewayInfo{
		URL:                    m[fieldURL],
		Shards:                 atoi(m[fieldShards]),
		MaxConcurrency:         atoi(m[fieldMaxConcurrency]),
		Total:                  atoi(m[fieldTotal]),
		Remaining:              atoi(m[fieldRemaining]),
		MaxConcurrencyOverride: m[fieldOverride] == "1",
	}
	if ms, _ := strconv.ParseInt(m[fieldResetAt], 10, 64); ms > 0 {
		info.ResetAt = time.UnixMilli(ms)
	}
	return info, nil
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// budgetScript refreshes remaining once the reset time has passed and
// returns the budget.
//
//	KEYS[1] -> gateway hash
//	ARGV[1] -> now, unix ms
//	ARGV[2] -> next reset to assume when refreshing, unix ms
//
// Returns {remaining, reset_at} or false when no total is known.
var budgetScript = redis.NewScript(`
local total = redis.call('HGET', KEYS[1], 'total')
if not total then return false end
local reset = tonumber(redis.call('HGET', KEYS[1], 'reset_at') or '0') or 0
if reset > 0 and reset <= tonumber(ARGV[1]) then
  redis.call('HSET', KEYS[1], 'remaining', total, 'reset_at', ARGV[2])
end
local remaining = redis.call('HGET', KEYS[1], 'remaining') or total
return {tonumber(remaining) or 0, tonumber(redis.call('HGET', KEYS[1], 'reset_at') or '0') or 0}
`)

// CheckBudget reports whether identifies more IDENTIFYs fit in the daily
// session_start_limit while leaving reserve starts untouched. Once the saved
// reset time has passed, remaining goes back to total first (and the next
// reset is assumed 24 h later, until fresh numbers are saved). It returns
// ErrSessionStartLimit (wrapped, with the numbers) when remaining -
// identifies < reserve, and nil when no budget is known: without numbers
// nothing can be refused.
func CheckBudget(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace, identifies int, reserve int) error {
	if identifies <= 0 {
		// Resuming spends nothing, even from an exhausted budget.
		return nil
	}
	now := time.Now()
	v, err := budgetScript.Run(ctx, rdb, []string{ks.Gateway()},
		now.UnixMilli(), now.Add(budgetResetPeriod).UnixMilli()).Int64Slice()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("identify: check budget: %w", err)
	}
	if len(v) != 2 {
		return fmt.Errorf("identify: check budget: unexpected reply %v", v)
	}
	remaining, resetAt := int(v[0]), time.UnixMilli(v[1])
	if remaining-identifies < reserve {
		return fmt.Errorf("%w: %d identifies needed, %d remaining, %d reserved; resets at %s",
			ErrSessionStartLimit, identifies, remaining, reserve, resetAt.UTC().Format(time.RFC3339))
	}
	return nil
}

// SetShardCount records a new shard count in the gateway record (a
// re-shard), leaving the budget and the rest as they are.
func SetShardCount(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace, shards int) error {
	if err := rdb.HSet(ctx, ks.Gateway(), fieldShards, shards).Err(); err != nil {
		return fmt.Errorf("identify: set shard count: %w", err)
	}
	return nil
}
