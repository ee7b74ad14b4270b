// Package leases lets several launchers run one bot: each cluster (and
// each service copy) is owned through a lease in Redis that its launcher
// renews, and every claim draws a new fencing token.
//
// A lease is the keyspace.Lease hash: owner (launcher id), host, pid, token
// and expires. Expiry is kept in Redis server time and judged by Lua
// scripts that read TIME, so the launchers' clocks never have to agree. The
// hash itself never expires: the token only grows, so a process holding an
// older token can always be told it is stale (sessions refuses its writes).
//
// The package also keeps the launchers' records (keyspace.LauncherRecord,
// indexed by keyspace.Launchers) and the lock under which the first
// launcher writes the bot's plan (keyspace.PlanLock).
package leases

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
)

// Errors of the package.
var (
	// ErrHeld is returned by Claim when another launcher holds the lease.
	ErrHeld = errors.New("leases: held by another launcher")
	// ErrLost is returned by Renew and Check when the lease is no longer
	// the caller's: it expired, or another launcher claimed it since.
	ErrLost = errors.New("leases: lease lost")
	// ErrLocked is returned by LockPlan when another launcher kept the plan
	// lock for the whole wait.
	ErrLocked = errors.New("leases: plan lock held by another launcher")
)

// Hash field names of keyspace.Lease.
const (
	FieldOwner        = "owner"
	FieldHost         = "host"
	FieldPID          = "pid"
	FieldToken        = "token"
	FieldExpires      = "expires"
	FieldUnownedSince = "unowned_since"
)

// ClusterName is the lease name of cluster id.
func ClusterName(id int) string { return "cluster:" + strconv.Itoa(id) }

// ServiceName is the lease name of copy copyN of service name.
func ServiceName(name string, copyN int) string { return "service:" + name + "#" + strconv.Itoa(copyN) }

// Holder is the launcher that claims a lease.
type Holder struct {
	// ID is the launcher's id, unique per launcher process.
	ID string
	// Host and PID say where it runs.
	Host string
	PID  int
}

// Lease is a lease as stored.
type Lease struct {
	// Name is the lease's name (ClusterName, ServiceName).
	Name string
	// Owner is the launcher id of the last claim; empty when released or
	// never claimed.
	Owner string
	Host  string
	PID   int
	// Token is the fencing token of the last claim.
	Token uint64
	// Remaining is how long the lease had left when it was read; zero or
	// less when it is free (expired, released, never claimed).
	Remaining time.Duration
	// UnownedSince is when a launcher first saw the lease free and could
	// not take it; zero while it is owned.
	UnownedSince time.Time
}

// Held reports whether a launcher owns the lease.
func (l Lease) Held() bool { return l.Owner != "" && l.Remaining > 0 }

// Each script that judges expiry starts by reading Redis's clock in unix
// milliseconds (TIME), so the launchers' clocks are never compared.

// claimScript takes a free lease (never claimed, released or expired) or
// renews the caller's own with a new token.
//
//	KEYS[1] -> lease hash
//	ARGV[1] -> owner (launcher id)
//	ARGV[2] -> host
//	ARGV[3] -> pid
//	ARGV[4] -> ttl, ms
//
// Returns {token, ttl ms} when claimed, {0, remaining ms} when another
// launcher holds it.
var claimScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local owner = redis.call('HGET', KEYS[1], 'owner')
local exp = tonumber(redis.call('HGET', KEYS[1], 'expires') or '0') or 0
if owner and owner ~= '' and owner ~= ARGV[1] and exp > now then
  return {0, exp - now}
end
local token = redis.call('HINCRBY', KEYS[1], 'token', 1)
redis.call('HSET', KEYS[1], 'owner', ARGV[1], 'host', ARGV[2], 'pid', ARGV[3], 'expires', now + tonumber(ARGV[4]))
redis.call('HDEL', KEYS[1], 'unowned_since')
return {token, tonumber(ARGV[4])}
`)

// renewScript extends the caller's lease; an expired lease is lost even
// when nobody claimed it yet, as its process may already have stopped.
//
//	KEYS[1] -> lease hash
//	ARGV[1] -> owner
//	ARGV[2] -> token
//	ARGV[3] -> ttl, ms
//
// Returns the ttl when renewed, -1 when the lease is not the caller's.
var renewScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('HMGET', KEYS[1], 'owner', 'token', 'expires')
if v[1] ~= ARGV[1] or v[2] ~= ARGV[2] or (tonumber(v[3] or '0') or 0) <= now then return -1 end
redis.call('HSET', KEYS[1], 'expires', now + tonumber(ARGV[3]))
return tonumber(ARGV[3])
`)

// checkScript tells the holder of token how long its lease has left.
//
//	KEYS[1] -> lease hash
//	ARGV[1] -> token
//
// Returns the remaining ms, -1 when the token is not the lease's or it
// expired.
var checkScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('HMGET', KEYS[1], 'token', 'expires', 'owner')
if v[1] ~= ARGV[1] or not v[3] or v[3] == '' then return -1 end
local rem = (tonumber(v[2] or '0') or 0) - now
if rem <= 0 then return -1 end
return rem
`)

// releaseScript frees the caller's lease at once, keeping the token.
//
//	KEYS[1] -> lease hash
//	ARGV[1] -> owner
//	ARGV[2] -> token
//
// Returns 1 when released, 0 when the lease was not the caller's.
var releaseScript = redis.NewScript(`
local v = redis.call('HMGET', KEYS[1], 'owner', 'token')
if v[1] ~= ARGV[1] or v[2] ~= ARGV[2] then return 0 end
redis.call('HSET', KEYS[1], 'owner', '', 'expires', 0)
return 1
`)

// unownedScript notes that a free lease found no launcher to take it.
//
//	KEYS[1] -> lease hash
//
// Returns {1, now ms} the first time, {0, since ms} when already noted,
// {0, 0} when the lease is held.
var unownedScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local v = redis.call('HMGET', KEYS[1], 'owner', 'expires', 'unowned_since')
if v[1] and v[1] ~= '' and (tonumber(v[2] or '0') or 0) > now then return {0, 0} end
if v[3] then return {0, tonumber(v[3])} end
redis.call('HSET', KEYS[1], 'unowned_since', now)
return {1, now}
`)

func ms(d time.Duration) int64 { return max(d.Milliseconds(), 1) }

// Claim takes lease name for h for ttl and returns the new fencing token.
// It fails with ErrHeld when another launcher holds it; a lease h already
// holds is claimed again with a new token.
func Claim(ctx context.Context, rdb redis.Scripter, ks keyspace.Keyspace, name string, h Holder, ttl time.Duration) (uint64, error) {
	r, err := claimScript.Run(ctx, rdb, []string{ks.Lease(name)}, h.ID, h.Host, h.PID, ms(ttl)).Int64Slice()
	if err != nil {
		return 0, fmt.Errorf("leases: claim %s: %w", name, err)
	}
	if len(r) != 2 {
		return 0, fmt.Errorf("leases: claim %s: unexpected reply %v", name, r)
	}
	if r[0] <= 0 {
		return 0, fmt.Errorf("%w: %s (%s left)", ErrHeld, name, time.Duration(r[1])*time.Millisecond)
	}
	return uint64(r[0]), nil
}

// Renew extends owner's lease name, claimed with token, to ttl from now.
// It fails with ErrLost when the lease expired or was claimed since.
func Renew(ctx context.Context, rdb redis.Scripter, ks keyspace.Keyspace, name, owner string, token uint64, ttl time.Duration) error {
	n, err := renewScript.Run(ctx, rdb, []string{ks.Lease(name)}, owner, token, ms(ttl)).Int64()
	if err != nil {
		return fmt.Errorf("leases: renew %s: %w", name, err)
	}
	if n < 0 {
		return fmt.Errorf("%w: %s (token %d)", ErrLost, name, token)
	}
	return nil
}

// Check returns how long the lease name, held with token, has left. It
// fails with ErrLost when token is no longer the lease's or it expired. A
// process that measured its clock before the call may count on the lease
// until then plus the result, as Redis's clock only moved forward meanwhile.
func Check(ctx context.Context, rdb redis.Scripter, ks keyspace.Keyspace, name string, token uint64) (time.Duration, error) {
	n, err := checkScript.Run(ctx, rdb, []string{ks.Lease(name)}, token).Int64()
	if err != nil {
		return 0, fmt.Errorf("leases: check %s: %w", name, err)
	}
	if n < 0 {
		return 0, fmt.Errorf("%w: %s (token %d)", ErrLost, name, token)
	}
	return time.Duration(n) * time.Millisecond, nil
}

// Release frees owner's lease name at once, so another launcher can take
// it without waiting for it to expire. Releasing a lease that is no longer
// owner's does nothing.
func Release(ctx context.Context, rdb redis.Scripter, ks keyspace.Keyspace, name, owner string, token uint64) error {
	if err := releaseScript.Run(ctx, rdb, []string{ks.Lease(name)}, owner, token).Err(); err != nil {
		return fmt.Errorf("leases: release %s: %w", name, err)
	}
	return nil
}

// NoteUnowned records that lease name is free and the caller could not
// take it. It reports true the first time (the caller announces it), with
// when it was first noted; a held lease reports false and a zero time.
func NoteUnowned(ctx context.Context, rdb redis.Scripter, ks keyspace.Keyspace, name string) (bool, time.Time, error) {
	r, err := unownedScript.Run(ctx, rdb, []string{ks.Lease(name)}).Int64Slice()
	if err != nil {
		return false, time.Time{}, fmt.Errorf("leases: note %s unowned: %w", name, err)
	}
	if len(r) != 2 || r[1] == 0 {
		return false, time.Time{}, nil
	}
	return r[0] == 1, time.UnixMilli(r[1]), nil
}

// Read returns the leases of names, in order; a lease never claimed is
// returned with its name only. Remaining is computed against the caller's
// clock, which is good enough for showing it.
func Read(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace, names []string) ([]Lease, error) {
	pipe := rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(names))
	for i, n := range names {
		cmds[i] = pipe.HGetAll(ctx, ks.Lease(n))
	}
	if len(names) > 0 {
		if _, err := pipe.Exec(ctx); err != nil {
			return nil, fmt.Errorf("leases: read: %w", err)
		}
	}
	now := time.Now()
	out := make([]Lease, len(names))
	for i, n := range names {
		m := cmds[i].Val()
		l := Lease{Name: n, Owner: m[FieldOwner], Host: m[FieldHost]}
		l.PID, _ = strconv.Atoi(m[FieldPID])
		l.Token, _ = strconv.ParseUint(m[FieldToken], 10, 64)
		if exp, err := strconv.ParseInt(m[FieldExpires], 10, 64); err == nil && exp > 0 {
			l.Remaining = time.UnixMilli(exp).Sub(now)
		}
		if since, err := strconv.ParseInt(m[FieldUnownedSince], 10, 64); err == nil && since > 0 {
			l.UnownedSince = time.UnixMilli(since)
		}
		out[i] = l
	}
	return out, nil
}

// Delete removes the leases of names (clusters a smaller plan no longer
// has).
func Delete(ctx context.Context, pipe redis.Pipeliner, ks keyspace.Keyspace, names ...string) {
	for _, n := range names {
		pipe.Del(ctx, ks.Lease(n))
	}
}
