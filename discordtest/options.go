package discordtest

import (
	"encoding/base64"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"time"

	"github.com/disgoorg/disgo/gateway"
	"github.com/disgoorg/snowflake/v2"
)

// DefaultAppID is the application (and bot user) id used when Options.AppID is zero.
const DefaultAppID snowflake.ID = 1100000000000000001

// Violation actions: what the server does when an IDENTIFY arrives in a concurrency
// bucket that already identified within the identify window.
const (
	// ViolationRecord only records the violation and lets the IDENTIFY succeed.
	ViolationRecord = "record"
	// ViolationInvalidSession answers with op 9 INVALID_SESSION (d=false), which is
	// what Discord does.
	ViolationInvalidSession = "invalid_session"
	// ViolationClose4008 closes the connection with 4008 (rate limited).
	ViolationClose4008 = "close4008"
)

// Options configures a Server. The zero value is usable: every field has a default.
type Options struct {
	// Addr is the TCP listen address. Default "127.0.0.1:0" (a free port).
	Addr string
	// AppID is the application id, which is also the bot user's id.
	// Default DefaultAppID.
	AppID snowflake.ID
	// Token is the bot token clients must present. Default TokenFor(AppID), which
	// disgo can parse the application id from.
	Token string
	// Shards is the recommended shard count returned by GET /gateway/bot. Default 1.
	Shards int
	// MaxConcurrency is session_start_limit.max_concurrency: the number of identify
	// buckets (bucket = shard_id % MaxConcurrency). Default 1. Changeable at runtime.
	MaxConcurrency int
	// SessionStartTotal is session_start_limit.total. Remaining starts equal to it and
	// decreases by one per accepted IDENTIFY. Default 1000.
	SessionStartTotal int
	// IdentifyWindow is how long an identify occupies its bucket: a second IDENTIFY in
	// the same bucket sooner than this is a violation. Default 5s. Changeable at runtime.
	IdentifyWindow time.Duration
	// ViolationAction is one of ViolationRecord (default), ViolationInvalidSession or
	// ViolationClose4008. Changeable at runtime.
	ViolationAction string
	// HeartbeatInterval is sent in HELLO. Default 41.25s. Must not be negative; disgo
	// panics on an interval of zero, so zero means the default.
	HeartbeatInterval time.Duration
	// HeartbeatACKDelay delays every HEARTBEAT_ACK. Default 3ms. It is never zero: on
	// loopback an instant ACK can overtake disgo's bookkeeping of the heartbeat it just
	// sent, and disgo then declares the connection a zombie and reconnects.
	HeartbeatACKDelay time.Duration
	// HeartbeatTimeout, when positive, closes a connection with 4009 (session timed
	// out) once it has not sent a heartbeat for this long. Default 0 (off).
	HeartbeatTimeout time.Duration
	// ResumeWindow is how long a session whose connection went away (other than with
	// close code 1000/1001) stays resumable. Default 2m.
	ResumeWindow time.Duration
	// ReplayBuffer is the number of dispatches each session keeps for RESUME.
	// Default 10000.
	ReplayBuffer int
	// World configures the generated guilds, channels, roles and users.
	World WorldOptions
	// Logger receives the server's logs. Default: discard.
	Logger *slog.Logger
	// HelloDelay delays HELLO on every new connection (fault injection).
	// Changeable at runtime.
	HelloDelay time.Duration
	// PrivilegedIntents is the allow-list of privileged intents (GUILD_MEMBERS,
	// GUILD_PRESENCES, MESSAGE_CONTENT) the application may request; requesting any
	// other privileged intent closes with 4014. Nil allows all of them.
	PrivilegedIntents *gateway.Intents
	// MaxGuildsPerShard, when positive, makes IDENTIFY close with 4011 (sharding
	// required) if the shard would own more guilds than this.
	MaxGuildsPerShard int
	// EchoMessages also dispatches MESSAGE_CREATE to the owning shard for every message
	// posted over REST (POST /channels/{id}/messages), as Discord does for the bot's
	// own messages.
	EchoMessages bool
	// IgnoreIntents delivers every event to every session whatever intents it
	// identified with. Default off: the server gates events by intents as Discord
	// does (see the package documentation, "Intents"), so a bot that forgot an
	// intent fails here the way it would on Discord.
	IgnoreIntents bool
	// SkipPayloadValidation turns off the check that every injected dispatch decodes
	// with disgo's own gateway types. The check prevents sending a payload that makes
	// disgo drop the connection; turn it off only for throughput measurements.
	SkipPayloadValidation bool
}

// WorldOptions sizes the deterministic world the server generates at start.
// The world lives in memory (about 2 KB per guild of the default shape), so
// its size is bounded: at most MaxGuilds guilds, Discord's own limits of
// channels and roles per guild, and MaxWorldObjects objects in all.
type WorldOptions struct {
	// Seed makes the world reproducible: the same seed gives the same ids and names.
	Seed int64
	// Guilds is the number of guilds the bot is in. Default 10. Use a negative value
	// for none. At most MaxGuilds.
	Guilds int
	// ChannelsPerGuild is the number of channels per guild: one category, then text
	// and voice channels. Default 5. At most MaxChannelsPerGuild.
	ChannelsPerGuild int
	// RolesPerGuild is the number of roles per guild, including @everyone. Default 3.
	// At most MaxRolesPerGuild.
	RolesPerGuild int
	// MembersPerGuild is the number of human members per guild, taken from the user
	// pool; the bot is always an extra member. Default 5. Capped by Users.
	MembersPerGuild int
	// Users is the size of the user pool members are drawn from. Default 50. At
	// most MaxUsers.
	Users int
}

// Bounds of WorldOptions. MaxChannelsPerGuild and MaxRolesPerGuild are
// Discord's limits; MaxWorldObjects (guilds, plus their channels, roles and
// members, plus users) keeps a world within a few gigabytes.
const (
	MaxGuilds           = 1_000_000
	MaxChannelsPerGuild = 500
	MaxRolesPerGuild    = 250
	MaxUsers            = 1_000_000
	MaxWorldObjects     = 20_000_000
)

// ErrWorldTooLarge is returned (wrapped) by NewServer for WorldOptions
// beyond their bounds.
var ErrWorldTooLarge = errors.New("discordtest: world too large")

func (o Options) withDefaults() (Options, error) {
	if o.Addr == "" {
		o.Addr = "127.0.0.1:0"
	}
	if o.AppID == 0 {
		o.AppID = DefaultAppID
	}
	if o.Token == "" {
		o.Token = TokenFor(o.AppID)
	}
	if o.Shards <= 0 {
		o.Shards = 1
	}
	if o.MaxConcurrency <= 0 {
		o.MaxConcurrency = 1
	}
	if o.SessionStartTotal <= 0 {
		o.SessionStartTotal = 1000
	}
	if o.IdentifyWindow <= 0 {
		o.IdentifyWindow = 5 * time.Second
	}
	if o.ViolationAction == "" {
		o.ViolationAction = ViolationRecord
	}
	if err := checkViolationAction(o.ViolationAction); err != nil {
		return o, err
	}
	if o.HeartbeatInterval < 0 {
		return o, fmt.Errorf("discordtest: negative HeartbeatInterval %s", o.HeartbeatInterval)
	}
	if o.HeartbeatInterval == 0 {
		o.HeartbeatInterval = 41250 * time.Millisecond
	}
	if o.HeartbeatInterval < time.Millisecond {
		o.HeartbeatInterval = time.Millisecond
	}
	if o.HeartbeatACKDelay <= 0 {
		o.HeartbeatACKDelay = 3 * time.Millisecond
	}
	if o.ResumeWindow <= 0 {
		o.ResumeWindow = 2 * time.Minute
	}
	if o.ReplayBuffer <= 0 {
		o.ReplayBuffer = 10000
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	o.World = o.World.withDefaults()
	if err := o.World.check(); err != nil {
		return o, err
	}
	return o, nil
}

// check reports a world (with defaults applied) beyond the bounds.
func (w WorldOptions) check() error {
	var errs []error
	for _, f := range []struct {
		name   string
		v, max int
	}{
		{"Guilds", w.Guilds, MaxGuilds},
		{"ChannelsPerGuild", w.ChannelsPerGuild, MaxChannelsPerGuild},
		{"RolesPerGuild", w.RolesPerGuild, MaxRolesPerGuild},
		{"Users", w.Users, MaxUsers},
	} {
		if f.v > f.max {
			errs = append(errs, fmt.Errorf("%w: %s=%d is more than %d", ErrWorldTooLarge, f.name, f.v, f.max))
		}
	}
	if len(errs) == 0 {
		// Each factor is bounded above, so the product fits an int64.
		objects := int64(w.Guilds)*int64(1+w.ChannelsPerGuild+w.RolesPerGuild+w.MembersPerGuild) + int64(w.Users)
		if objects > MaxWorldObjects {
			errs = append(errs, fmt.Errorf("%w: %d guilds of %d channels, %d roles and %d members make %d objects, more than %d",
				ErrWorldTooLarge, w.Guilds, w.ChannelsPerGuild, w.RolesPerGuild, w.MembersPerGuild, objects, MaxWorldObjects))
		}
	}
	return errors.Join(errs...)
}

func (w WorldOptions) withDefaults() WorldOptions {
	if w.Guilds == 0 {
		w.Guilds = 10
	}
	if w.Guilds < 0 {
		w.Guilds = 0
	}
	if w.ChannelsPerGuild <= 0 {
		w.ChannelsPerGuild = 5
	}
	if w.RolesPerGuild <= 0 {
		w.RolesPerGuild = 3
	}
	if w.MembersPerGuild <= 0 {
		w.MembersPerGuild = 5
	}
	if w.Users <= 0 {
		w.Users = 50
	}
	if w.MembersPerGuild > w.Users {
		w.MembersPerGuild = w.Users
	}
	return w
}

func checkViolationAction(a string) error {
	switch a {
	case ViolationRecord, ViolationInvalidSession, ViolationClose4008:
		return nil
	}
	return fmt.Errorf("discordtest: unknown violation action %q (want %q, %q or %q)",
		a, ViolationRecord, ViolationInvalidSession, ViolationClose4008)
}

// TokenFor returns a bot token for appID in the shape Discord uses and disgo parses:
// the base64 (standard alphabet, no padding) of the decimal id, then two more segments.
func TokenFor(appID snowflake.ID) string {
	return base64.RawStdEncoding.EncodeToString([]byte(strconv.FormatUint(uint64(appID), 10))) + ".fake.token"
}

// ShardFor returns the shard that owns guildID when the bot runs shardCount shards,
// using Discord's formula (guild_id >> 22) % shard_count.
func ShardFor(guildID snowflake.ID, shardCount int) int {
	if shardCount <= 1 {
		return 0
	}
	return int((uint64(guildID) >> 22) % uint64(shardCount))
}
