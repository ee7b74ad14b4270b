// Package identify coordinates Discord IDENTIFYs through Redis, so any number
// of processes on any number of hosts that run shards of one bot stay within
// the bot's identify rate limit (session_start_limit.max_concurrency
// IDENTIFYs per 5 seconds) and within its daily session budget.
//
// disgo's own limiter lives inside one ShardManager, so two processes that
// split the shards of one bot each believe they own every bucket and identify
// at the same time. Limiter keeps the buckets in Redis instead.
package identify

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mrand "math/rand/v2"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
)

// Defaults of the Limiter options.
const (
	// DefaultWindow is Discord's spacing between two IDENTIFYs of one bucket.
	DefaultWindow = 5 * time.Second
	// DefaultMargin is added to the window. The window already counts from
	// the end of the previous handshake (its READY), which Discord sent
	// after it received that IDENTIFY, so Discord sees two IDENTIFYs of a
	// bucket at least window + the READY's and the next IDENTIFY's transit
	// apart, whichever host sends them (Redis alone judges the hold; the
	// hosts' clocks are never compared). The margin only absorbs Redis's
	// expiry resolution; every extra millisecond is paid once per
	// identify round of a start.
	DefaultMargin = 100 * time.Millisecond
	// DefaultHandshakeTTL bounds how long one handshake (dial to READY) may
	// hold a bucket. disgo opens shards without a deadline, so a handshake
	// that hangs would otherwise hold the bucket forever.
	DefaultHandshakeTTL = 30 * time.Second
	// DefaultMaxPoll is the longest a waiting Wait sleeps between attempts.
	DefaultMaxPoll = 250 * time.Millisecond
)

// ErrLimiterClosed is returned by Wait after Close.
var ErrLimiterClosed = errors.New("identify: limiter closed")

// Limiter is a gateway.IdentifyRateLimiter whose buckets are Redis locks, so
// it limits IDENTIFYs across processes and hosts.
//
// Bucket b (shard_id % max_concurrency) is the string key
// keyspace.IdentifyBucket(b). Wait takes it with SET NX PX handshake-TTL and
// a random token; disgo calls Unlock once the handshake ended (READY, or a
// failure), and Unlock re-arms the key's expiry to window+margin, but only
// while the key still holds our token. So the next IDENTIFY of the bucket
// starts at least window after the previous one finished, wherever it runs.
//
// Every successful Wait also decrements session_start_limit.remaining in
// keyspace.Gateway(), because each IDENTIFY spends one session start.
type Limiter struct {
	rdb            redis.UniversalClient
	ks             keyspace.Keyspace
	maxConcurrency int
	cfg            config

	mu     sync.Mutex
	tokens map[int]string // shard id -> token of the lock that shard holds

	closed    chan struct{}
	closeOnce sync.Once

	waits waitCounters
}

type config struct {
	window       time.Duration
	margin       time.Duration
	handshakeTTL time.Duration
	maxPoll      time.Duration
	logger       *slog.Logger
}

// Option configures a Limiter.
type Option func(*config)

// WithWindow sets the spacing Discord requires between two IDENTIFYs of one
// bucket (default DefaultWindow). Tests against a fake with a shorter
// identify window set it to match.
func WithWindow(d time.Duration) Option { return func(c *config) { c.window = d } }

// WithMargin sets the safety margin added to the window (default
// DefaultMargin).
func WithMargin(d time.Duration) Option { return func(c *config) { c.margin = d } }

// WithHandshakeTTL sets how long a bucket stays held while a handshake runs
// without finishing (default DefaultHandshakeTTL).
func WithHandshakeTTL(d time.Duration) Option { return func(c *config) { c.handshakeTTL = d } }

// WithMaxPoll sets the longest sleep between two attempts of a waiting Wait
// (default DefaultMaxPoll).
func WithMaxPoll(d time.Duration) Option { return func(c *config) { c.maxPoll = d } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(c *config) { c.logger = l } }

// NewLimiter returns a Limiter for a bot with the given max_concurrency
// (values below 1 mean 1).
func NewLimiter(rdb redis.UniversalClient, ks keyspace.Keyspace, maxConcurrency int, opts ...Option) *Limiter {
	cfg := config{
		window:       DefaultWindow,
		margin:       DefaultMargin,
		handshakeTTL: DefaultHandshakeTTL,
		maxPoll:      DefaultMaxPoll,
		logger:       slog.Default(),
	}
	for _, o := range opts {
		o(&cfg)
	}
	if cfg.window < 0 {
		cfg.window = 0
	}
	if cfg.margin < 0 {
		cfg.margin = 0
	}
	if cfg.handshakeTTL < time.Second {
		cfg.handshakeTTL = time.Second
	}
	if cfg.maxPoll < 10*time.Millisecond {
		cfg.maxPoll = 10 * time.Millisecond
	}
	if maxConcurrency < 1 {
		maxConcurrency = 1
	}
	return &Limiter{
		rdb:            rdb,
		ks:             ks,
		maxConcurrency: maxConcurrency,
		cfg:            cfg,
		tokens:         make(map[int]string),
		closed:         make(chan struct{}),
	}
}

// MaxConcurrency returns the number of buckets.
func (l *Limiter) MaxConcurrency() int { return l.maxConcurrency }

// Bucket returns the bucket of shardID: shardID % max_concurrency, as
// Discord (and disgo's gateway.MaxConcurrencyKey) defines it. It is computed
// here so that readers of this package (inspect, megane-cli) do not link disgo.
func (l *Limiter) Bucket(shardID int) int {
	return shardID % l.maxConcurrency
}

// Hold returns how long a bucket stays taken after Unlock: window + margin.
func (l *Limiter) Hold() time.Duration { return l.cfg.window + l.cfg.margin }

// unlockScript re-arms the bucket's expiry to the post-handshake hold, but
// only if the lock is still ours: after a handshake longer than the
// handshake TTL the key may already belong to another shard.
//
//	KEYS[1] -> identify bucket key
//	ARGV[1] -> our token
//	ARGV[2] -> hold in ms
//
// Returns 1 when re-armed, 0 when the lock was not ours.
var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return 1
end
return 0
`)

// spendScript decrements session_start_limit.remaining, only when the
// gateway hash has one, so an unknown budget is not turned into -1.
//
//	KEYS[1] -> gateway hash
//
// Returns the new remaining, or false when there is none.
var spendScript = redis.NewScript(`
if redis.call('HEXISTS', KEYS[1], 'remaining') == 1 then
  return redis.call('HINCRBY', KEYS[1], 'remaining', -1)
end
return false
`)

// Wait blocks until shardID's bucket is free and takes it. It honours ctx
// and returns ctx's error (wrapped) when ctx ends first, or ErrLimiterClosed
// after Close. Redis errors are retried until ctx ends, because disgo retries
// a failed Wait forever anyway and a short Redis hiccup should only delay
// the IDENTIFY.
func (l *Limiter) Wait(ctx context.Context, shardID int) error {
	bucket := l.Bucket(shardID)
	key := l.ks.IdentifyBucket(bucket)
	token := newToken()
	start := time.Now()
	for attempt := 0; ; attempt++ {
		select {
		case <-l.closed:
			return ErrLimiterClosed
		default:
		}
		ok, err := l.rdb.SetNX(ctx, key, token, l.cfg.handshakeTTL).Result()
		if err == nil && ok {
			l.mu.Lock()
			l.tokens[shardID] = token
			l.mu.Unlock()
			l.spend(ctx, shardID)
			l.waits.add(time.Since(start))
			l.cfg.logger.DebugContext(ctx, "identify bucket taken",
				slog.Int("shard_id", shardID), slog.Int("bucket", bucket),
				slog.Duration("waited", time.Since(start)))
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("identify: wait for bucket %d: %w", bucket, ctx.Err())
		}
		sleep := jitter(l.cfg.maxPoll)
		if err != nil {
			l.cfg.logger.WarnContext(ctx, "identify bucket: redis error, retrying",
				slog.Int("shard_id", shardID), slog.Int("bucket", bucket), slog.Any("error", err))
		} else if ttl, terr := l.rdb.PTTL(ctx, key).Result(); terr == nil {
			switch {
			case ttl == -2*time.Nanosecond:
				// Expired between SET and PTTL: try again at once.
				sleep = time.Millisecond
			case ttl > 0 && ttl <= l.Hold():
				// The bucket cannot free before its expiry: Unlock only ever
				// sets the expiry to now+hold, which is no earlier. Sleep
				// until then, plus a little so waiters do not all arrive in
				// the same millisecond.
				sleep = ttl + time.Duration(mrand.Int64N(int64(20*time.Millisecond)))
			}
			// Otherwise a handshake is running and may end any moment: poll.
		}
		if err := l.sleep(ctx, sleep); err != nil {
			return fmt.Errorf("identify: wait for bucket %d: %w", bucket, err)
		}
	}
}

func (l *Limiter) spend(ctx context.Context, shardID int) {
	v, err := spendScript.Run(ctx, l.rdb, []string{l.ks.Gateway()}).Result()
	switch {
	case errors.Is(err, redis.Nil):
	case err != nil:
		l.cfg.logger.WarnContext(ctx, "identify: could not record the session start",
			slog.Int("shard_id", shardID), slog.Any("error", err))
	default:
		if n, ok := v.(int64); ok && n <= 0 {
			l.cfg.logger.WarnContext(ctx, "identify: session_start_limit exhausted",
				slog.Int("shard_id", shardID), slog.Int64("remaining", n))
		}
	}
}

func (l *Limiter) sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-l.closed:
		return ErrLimiterClosed
	case <-t.C:
		return nil
	}
}

// Unlock ends shardID's handshake: the bucket stays taken for window+margin
// from now, then frees itself. disgo calls it after READY and after a failed
// attempt alike.
func (l *Limiter) Unlock(shardID int) {
	l.mu.Lock()
	token, ok := l.tokens[shardID]
	delete(l.tokens, shardID)
	l.mu.Unlock()
	if !ok {
		return
	}
	bucket := l.Bucket(shardID)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n, err := unlockScript.Run(ctx, l.rdb, []string{l.ks.IdentifyBucket(bucket)}, token, l.Hold().Milliseconds()).Int()
	switch {
	case err != nil:
		// The key still expires by its handshake TTL, which is longer than
		// the hold: failing here only delays the next IDENTIFY.
		l.cfg.logger.Warn("identify: unlock failed; the bucket frees itself by its handshake TTL",
			slog.Int("shard_id", shardID), slog.Int("bucket", bucket), slog.Any("error", err))
	case n == 0:
		l.cfg.logger.Warn("identify: handshake outlived the bucket lock",
			slog.Int("shard_id", shardID), slog.Int("bucket", bucket),
			slog.Duration("handshake_ttl", l.cfg.handshakeTTL))
	}
}

// Close makes pending and future Waits return ErrLimiterClosed. Buckets
// already taken keep their expiry, so a closing process still leaves the
// window in place for the others.
func (l *Limiter) Close(context.Context) {
	l.closeOnce.Do(func() { close(l.closed) })
}

func newToken() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// jitter spreads waiters of one bucket apart by ±20%, so processes that
// started together do not poll Redis in lock step.
func jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return time.Millisecond
	}
	f := 0.8 + 0.4*mrand.Float64()
	j := time.Duration(float64(d) * f)
	if j < time.Millisecond {
		j = time.Millisecond
	}
	return j
}
