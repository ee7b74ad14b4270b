// Package sessions keeps each shard's resumable gateway session in Redis, so
// a shard survives the process that ran it: a restarted (or moved) cluster
// RESUMEs instead of spending an IDENTIFY, and Discord replays what was
// dispatched while it was away.
//
// A session is the keyspace.ShardSession hash with the fields session_id,
// seq, resume_url, shard_count, guilds, updated_at (unix ms) and fence. Writes go through a
// Lua script that lets seq only move forward within one session_id, so a
// late or duplicated writer can never rewind a shard into replaying events
// twice; a different session_id (the shard identified again) replaces the
// session.
//
// With several launchers, the process running a shard holds a lease with a
// fencing token (package leases). It raises the session's fence to its
// token before it starts the shard (Fence) and saves with it (State.Fence);
// a write with a lower token than the fence fails with ErrFenced, so a
// stale owner (a frozen process, a partitioned host) can never overwrite
// the session its successor resumes.
package sessions

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
)

// State is one shard's resumable session.
type State struct {
	// SessionID is READY's session_id.
	SessionID string
	// Sequence is the last dispatch sequence the shard handled. Zero means
	// no dispatch, which disgo treats as "identify".
	Sequence int
	// ResumeURL is READY's resume_gateway_url.
	ResumeURL string
	// ShardCount is the shard count the session identified with; zero when
	// unknown. Resuming it under another shard count would bring back the
	// old layout's guilds, so a cluster only resumes a matching one.
	ShardCount int
	// Guilds is how many guilds the shard had once the events up to
	// Sequence were handled; negative when unknown (Load returns -1 for a
	// session saved without it). A resumed shard gets no READY to count
	// its guilds from: it starts from this count, and Discord's replay
	// from Sequence brings it up to date.
	Guilds int
	// UpdatedAt is when the state was last written.
	UpdatedAt time.Time
	// Fence is the writer's fencing token (its lease's; zero without
	// leases). Save refuses it with ErrFenced when it is below the fence
	// the session carries.
	Fence uint64
}

// ErrFenced is returned for a write by a process whose fencing token is
// below the session's fence: another process owns the shard now.
var ErrFenced = errors.New("sessions: fenced: a newer owner holds the shard")

// fencedReply starts the script's error reply for a fenced write.
const fencedReply = "FENCED"

// IsFenced reports whether err (from Save, SaveAll, a pipeline with
// SavePipe, or Fence) says the writer was fenced off.
func IsFenced(err error) bool {
	return err != nil && (errors.Is(err, ErrFenced) || strings.Contains(err.Error(), fencedReply+" "))
}

// Complete reports whether s can be resumed: disgo silently IDENTIFYs when
// the session or the sequence is missing, and an empty resume URL breaks
// every later reconnect.
func (s State) Complete() bool {
	return s.SessionID != "" && s.Sequence > 0 && s.ResumeURL != ""
}

// Hash field names of keyspace.ShardSession.
const (
	fieldSessionID  = "session_id"
	fieldSeq        = "seq"
	fieldResumeURL  = "resume_url"
	fieldShardCount = "shard_count"
	fieldGuilds     = "guilds"
	fieldUpdatedAt  = "updated_at"
	fieldFence      = "fence"
)

// saveScript stores a session, letting seq only move forward for the same
// session_id.
//
//	KEYS[1] -> session hash
//	ARGV[1] -> session_id
//	ARGV[2] -> seq
//	ARGV[3] -> resume_url (empty keeps the stored one for the same session)
//	ARGV[4] -> updated_at, unix ms
//	ARGV[5] -> shard_count (0: unknown)
//	ARGV[6] -> guilds (empty: unknown, the field is dropped)
//	ARGV[7] -> the writer's fencing token (0 without leases)
//
// Returns 2 when a new session replaced the stored one, 1 when the stored
// session moved forward (or stayed), 0 when the write was behind and
// ignored; an error reply starting FENCED when the token is below the
// session's fence.
var saveScript = redis.NewScript(`
local fence = tonumber(redis.call('HGET', KEYS[1], 'fence') or '0') or 0
if tonumber(ARGV[7]) < fence then
  return redis.error_reply('FENCED token ' .. ARGV[7] .. ' is below the fence ' .. fence)
end
local cur = redis.call('HGET', KEYS[1], 'session_id')
if cur == ARGV[1] then
  local seq = tonumber(redis.call('HGET', KEYS[1], 'seq') or '0') or 0
  if tonumber(ARGV[2]) < seq then return 0 end
  redis.call('HSET', KEYS[1], 'seq', ARGV[2], 'updated_at', ARGV[4])
  if ARGV[3] ~= '' then redis.call('HSET', KEYS[1], 'resume_url', ARGV[3]) end
  if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'guilds', ARGV[6]) else redis.call('HDEL', KEYS[1], 'guilds') end
  return 1
end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'session_id', ARGV[1], 'seq', ARGV[2], 'resume_url', ARGV[3], 'updated_at', ARGV[4], 'shard_count', ARGV[5])
if ARGV[6] ~= '' then redis.call('HSET', KEYS[1], 'guilds', ARGV[6]) end
if fence > 0 then redis.call('HSET', KEYS[1], 'fence', fence) end
return 2
`)

// fenceScript raises a session's fence to a token.
//
//	KEYS[1] -> session hash
//	ARGV[1] -> token
//
// Returns 1 when raised (or already there), 0 when the fence is higher.
var fenceScript = redis.NewScript(`
local fence = tonumber(redis.call('HGET', KEYS[1], 'fence') or '0') or 0
if tonumber(ARGV[1]) < fence then return 0 end
redis.call('HSET', KEYS[1], 'fence', ARGV[1])
return 1
`)

// Fence raises the fence of shards' sessions to token, so no process with
// a lower token can save them any more. It fails with ErrFenced when a
// session's fence is already above token (a newer owner started).
func Fence(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace, shards []int, token uint64) error {
	if len(shards) == 0 {
		return nil
	}
	pipe := rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(shards))
	for i, shard := range shards {
		cmds[i] = fenceScript.Eval(ctx, pipe, []string{ks.ShardSession(shard)}, token)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("sessions: fence: %w", err)
	}
	for i, c := range cmds {
		if n, _ := c.Int64(); n != 1 {
			return fmt.Errorf("%w: shard %d (token %d)", ErrFenced, shards[i], token)
		}
	}
	return nil
}

// Fences returns the fence of shards' sessions (zero where none is set).
func Fences(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace, shards []int) (map[int]uint64, error) {
	pipe := rdb.Pipeline()
	cmds := make([]*redis.StringCmd, len(shards))
	for i, shard := range shards {
		cmds[i] = pipe.HGet(ctx, ks.ShardSession(shard), fieldFence)
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return nil, fmt.Errorf("sessions: read fences: %w", err)
	}
	out := make(map[int]uint64, len(shards))
	for i, shard := range shards {
		out[shard], _ = strconv.ParseUint(cmds[i].Val(), 10, 64)
	}
	return out, nil
}

// ClearFences removes the fences of shards' sessions, for a bot that runs
// without leases again (one launcher): its unfenced writes would
// otherwise be refused.
func ClearFences(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace, shards []int) error {
	pipe := rdb.Pipeline()
	for _, shard := range shards {
		pipe.HDel(ctx, ks.ShardSession(shard), fieldFence)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("sessions: clear fences: %w", err)
	}
	return nil
}

// Save writes shard's session. Within one session_id the stored sequence
// only moves forward (an older write is ignored without error); a different
// session_id replaces the stored session. An empty SessionID is refused.
func Save(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace, shard int, s State) error {
	if s.SessionID == "" {
		return fmt.Errorf("sessions: save shard %d: empty session id", shard)
	}
	if err := saveCmd(ctx, rdb, ks, shard, s).Err(); err != nil {
		if IsFenced(err) {
			return fmt.Errorf("%w: save shard %d: %w", ErrFenced, shard, err)
		}
		return fmt.Errorf("sessions: save shard %d: %w", shard, err)
	}
	return nil
}

// SaveAll writes several shards' sessions in one pipeline, with the same
// rules as Save. States with an empty SessionID are skipped.
func SaveAll(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace, states map[int]State) error {
	if len(states) == 0 {
		return nil
	}
	// EVAL rather than EVALSHA: inside a pipeline a NOSCRIPT reply cannot be
	// retried, and the script is short.
	pipe := rdb.Pipeline()
	for shard, s := range states {
		if s.SessionID == "" {
			continue
		}
		SavePipe(ctx, pipe, ks, shard, s)
	}
	cmds, err := pipe.Exec(ctx)
	if err != nil {
		for _, c := range cmds {
			if c.Err() != nil {
				return fmt.Errorf("sessions: save: %w", c.Err())
			}
		}
		return fmt.Errorf("sessions: save: %w", err)
	}
	return nil
}

// SavePipe queues a Save of shard's session on pipe, for callers that batch
// it with other writes. Its reply (2 replaced, 1 moved forward, 0 ignored as
// behind) arrives with pipe.Exec.
func SavePipe(ctx context.Context, pipe redis.Pipeliner, ks keyspace.Keyspace, shard int, s State) *redis.Cmd {
	return saveScript.Eval(ctx, pipe, []string{ks.ShardSession(shard)}, saveArgs(s)...)
}

func saveCmd(ctx context.Context, rdb redis.Scripter, ks keyspace.Keyspace, shard int, s State) *redis.Cmd {
	return saveScript.Run(ctx, rdb, []string{ks.ShardSession(shard)}, saveArgs(s)...)
}

func saveArgs(s State) []any {
	at := s.UpdatedAt
	if at.IsZero() {
		at = time.Now()
	}
	guilds := ""
	if s.Guilds >= 0 {
		guilds = strconv.Itoa(s.Guilds)
	}
	return []any{s.SessionID, s.Sequence, s.ResumeURL, at.UnixMilli(), s.ShardCount, guilds, s.Fence}
}

// Load returns the complete sessions (see State.Complete) of the given
// shards; shards without one are absent from the map.
func Load(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace, shards []int) (map[int]State, error) {
	out := make(map[int]State, len(shards))
	if len(shards) == 0 {
		return out, nil
	}
	pipe := rdb.Pipeline()
	cmds := make([]*redis.MapStringStringCmd, len(shards))
	for i, shard := range shards {
		cmds[i] = pipe.HGetAll(ctx, ks.ShardSession(shard))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("sessions: load: %w", err)
	}
	for i, shard := range shards {
		m := cmds[i].Val()
		s := State{SessionID: m[fieldSessionID], ResumeURL: m[fieldResumeURL]}
		s.Sequence, _ = strconv.Atoi(m[fieldSeq])
		s.ShardCount, _ = strconv.Atoi(m[fieldShardCount])
		s.Fence, _ = strconv.ParseUint(m[fieldFence], 10, 64)
		s.Guilds = -1
		if n, err := strconv.Atoi(m[fieldGuilds]); err == nil && n >= 0 {
			s.Guilds = n
		}
		if ms, _ := strconv.ParseInt(m[fieldUpdatedAt], 10, 64); ms > 0 {
			s.UpdatedAt = time.UnixMilli(ms)
		}
		if s.Complete() {
			out[shard] = s
		}
	}
	return out, nil
}

// Delete forgets shard's session, so its next start IDENTIFYs.
func Delete(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace, shard int) error {
	if err := rdb.Del(ctx, ks.ShardSession(shard)).Err(); err != nil {
		return fmt.Errorf("sessions: delete shard %d: %w", shard, err)
	}
	return nil
}
