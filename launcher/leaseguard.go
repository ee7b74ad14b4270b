package launcher

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/leases"
)

// errLeaseLost ends a child that could not confirm its lease.
var errLeaseLost = errors.New("launcher: lease lost")

// leaseGuard keeps a child (several launchers per bot) from running past its
// lease: it checks the lease every sixth of its TTL and ends the context it
// returns when the lease is another's, or when it could not be confirmed
// for so long that another launcher may take it soon (a frozen process, a
// host cut off from Redis). It measures its clock before each check, so
// its own deadline always falls before the lease's expiry in Redis.
type leaseGuard struct {
	rdb   redis.Scripter
	ks    keyspace.Keyspace
	name  string
	token uint64
	ttl   time.Duration
	log   *slog.Logger
	lost  atomic.Bool
	until atomic.Int64 // unix ns until which the lease is trusted
}

// guardLease starts the guard of a child whose launcher passed a lease
// token; without one (one launcher per bot) it returns ctx as it is. The
// first check happens before it returns: a child whose lease is already
// gone fails with errLeaseLost at once.
func guardLease(ctx context.Context, rdb redis.Scripter, ks keyspace.Keyspace, name string, log *slog.Logger) (context.Context, *leaseGuard, error) {
	raw := os.Getenv(envLeaseToken)
	if raw == "" {
		return ctx, nil, nil
	}
	token, err := strconv.ParseUint(raw, 10, 64)
	if err != nil || token == 0 {
		return ctx, nil, fmt.Errorf("%w: %s=%q is not a lease token", ErrInvalidConfig, envLeaseToken, raw)
	}
	ttl := DefaultLeaseTTL
	if v := os.Getenv(envLeaseTTL); v != "" {
		if ttl, err = time.ParseDuration(v); err != nil || ttl <= 0 {
			return ctx, nil, fmt.Errorf("%w: %s=%q is not a duration", ErrInvalidConfig, envLeaseTTL, v)
		}
	}
	g := &leaseGuard{rdb: rdb, ks: ks, name: name, token: token, ttl: ttl, log: log}
	until, err := g.check(ctx, time.Time{})
	if err != nil {
		return ctx, nil, err
	}
	g.until.Store(until.UnixNano())
	gctx, cancel := context.WithCancel(ctx)
	go func() {
		defer cancel()
		g.watch(gctx, until)
	}()
	return gctx, g, nil
}

// Token is the fencing token the child runs under.
func (g *leaseGuard) Token() uint64 {
	if g == nil {
		return 0
	}
	return g.token
}

// Lost reports whether the guard ended the child's context.
func (g *leaseGuard) Lost() bool { return g != nil && g.lost.Load() }

// valid reports whether the lease is trusted right now, without a round
// trip: the gateway dialer asks it before every connection, so a process
// that was frozen past its lease opens no socket (no RESUME of a session
// its successor holds) in the moment before the guard stops it.
func (g *leaseGuard) valid() bool {
	return !g.lost.Load() && time.Now().UnixNano() < g.until.Load()
}

// dialer is the gateway's websocket dialer, refusing to dial while the
// lease is not trusted.
func (g *leaseGuard) dialer() *websocket.Dialer {
	d := *websocket.DefaultDialer
	var nd net.Dialer
	d.NetDialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if !g.valid() {
			return nil, fmt.Errorf("%w: not dialing %s", errLeaseLost, addr)
		}
		return nd.DialContext(ctx, network, addr)
	}
	return &d
}

func (g *leaseGuard) margin() time.Duration { return g.ttl / 4 }

// check confirms the lease and returns until when the child may trust it;
// on a Redis error it keeps the previous deadline.
func (g *leaseGuard) check(ctx context.Context, until time.Time) (time.Time, error) {
	cctx, cancel := context.WithTimeout(ctx, g.ttl/6)
	defer cancel()
	start := time.Now()
	rem, err := leases.Check(cctx, g.rdb, g.ks, g.name, g.token)
	switch {
	case err == nil:
		return start.Add(rem - g.margin()), nil
	case errors.Is(err, leases.ErrLost):
		return until, fmt.Errorf("%w: %w", errLeaseLost, err)
	case until.IsZero():
		return until, fmt.Errorf("%w: cannot confirm it: %w", errLeaseLost, err)
	}
	g.log.Warn("could not confirm the lease; trusting it until its deadline", slog.String("lease", g.name),
		slog.Time("until", until), slog.Any("error", err))
	return until, nil
}

func (g *leaseGuard) watch(ctx context.Context, until time.Time) {
	every := max(g.ttl/6, 50*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		// First the deadline, without a round trip: a process that was
		// frozen past it stops before anything else.
		if time.Now().After(until) {
			g.stop(fmt.Errorf("%w: not confirmed in time (deadline %s)", errLeaseLost, until.Format(time.TimeOnly)))
			return
		}
		var err error
		if until, err = g.check(ctx, until); err != nil {
			if ctx.Err() == nil {
				g.stop(err)
			}
			return
		}
		g.until.Store(until.UnixNano())
	}
}

func (g *leaseGuard) stop(err error) {
	g.lost.Store(true)
	g.log.Error("stopping: this process no longer holds its lease; another launcher may run its shards",
		slog.String("lease", g.name), slog.Uint64("token", g.token), slog.Any("error", err))
}
