// Command fakediscord runs discordtest's fake Discord (gateway and REST) on its own,
// so bots in other processes, languages or machines can be tested against it.
//
// Every flag has an environment variable (FAKE_ADDR, FAKE_GUILDS, ...); a flag given
// on the command line wins. It prints the REST URL, gateway URL and token, then
// serves until SIGINT or SIGTERM.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/disgoorg/snowflake/v2"

	"github.com/megane-go/megane/discordtest"
)

func main() {
	if err := run(os.Args[1:]); errors.Is(err, flag.ErrHelp) {
		return
	} else if err != nil {
		fmt.Fprintln(os.Stderr, "fakediscord:", err)
		os.Exit(1)
	}
}

func envString(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func envDuration(name string, def time.Duration) time.Duration {
	if v, err := time.ParseDuration(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func envBool(name string) bool {
	v, _ := strconv.ParseBool(os.Getenv(name))
	return v
}

// controlRoutes documents the HTTP routes that drive and inspect the fake; -h
// prints it after the flags.
const controlRoutes = `Control routes (under the listen address; ids are JSON strings or numbers):
  GET  /_fake/stats      counters, identify/resume logs, violations, sessions
  GET  /_fake/messages   messages the bot posted over REST (reply_to: the message answered)
  GET  /_fake/world      guilds, channels, roles, members and users
  POST /_fake/message    a user posts a message: {"content":"!ping"} plus optional
                         "channel_id" (default: the guild's first text channel),
                         "guild_id" (default: the first guild), "author_id" (default:
                         the guild's first human member); "<@BOT_ID>" mentions the bot
  POST /_fake/dispatch   any gateway event: {"guild_id":"…" or "shard":N, "t":"GUILD_UPDATE", "d":{…}}
  POST /_fake/control    ?shard=N&action=reconnect|invalidate|invalidate_resumable|close&code=C|drop|heartbeat
  GET  /_fake/config     runtime limits; POST ?identify_window=2s&max_concurrency=4&
                         violation_action=record|invalid_session|close4008&hello_delay=0s (or a JSON body)
  POST /_fake/ratelimit  ?count=N&retry_after=1s: the next N REST calls get 429
  GET  /_fake/metrics    Prometheus metrics

Intents: by default the fake gates events by the intents a session identified with,
as Discord does: guild messages arrive with empty content without MESSAGE_CONTENT
(except DMs, mentions of the bot and its own messages), GUILD_MEMBER_* need
GUILD_MEMBERS, GUILD_CREATE lists only the bot without GUILD_PRESENCES.
-ignore-intents turns that off.

Example:
  curl -d '{"content":"!ping"}' http://127.0.0.1:8090/_fake/message
`

func run(args []string) error {
	fs := flag.NewFlagSet("fakediscord", flag.ContinueOnError)
	fs.Usage = func() {
		out := fs.Output()
		fmt.Fprintln(out, "Usage: fakediscord [flags]\n\nRuns a fake Discord (gateway and REST) for bots to connect to.\n\nFlags:")
		fs.PrintDefaults()
		fmt.Fprintln(out)
		fmt.Fprint(out, controlRoutes)
	}
	addr := fs.String("addr", envString("FAKE_ADDR", "127.0.0.1:8090"), "listen address (FAKE_ADDR)")
	appID := fs.Uint64("app-id", uint64(envInt("FAKE_APP_ID", int(discordtest.DefaultAppID))), "application and bot user id (FAKE_APP_ID)")
	token := fs.String("token", envString("FAKE_TOKEN", ""), "bot token; default derived from the app id (FAKE_TOKEN)")
	shards := fs.Int("shards", envInt("FAKE_SHARDS", 1), "recommended shard count in /gateway/bot (FAKE_SHARDS)")
	maxConc := fs.Int("max-concurrency", envInt("FAKE_MAX_CONCURRENCY", 1), "session_start_limit.max_concurrency (FAKE_MAX_CONCURRENCY)")
	sessionTotal := fs.Int("session-start-total", envInt("FAKE_SESSION_START_TOTAL", 1000), "session_start_limit.total (FAKE_SESSION_START_TOTAL)")
	identifyWindow := fs.Duration("identify-window", envDuration("FAKE_IDENTIFY_WINDOW", 5*time.Second), "identify concurrency window (FAKE_IDENTIFY_WINDOW)")
	violation := fs.String("violation-action", envString("FAKE_VIOLATION_ACTION", discordtest.ViolationRecord), "record, invalid_session or close4008 (FAKE_VIOLATION_ACTION)")
	heartbeat := fs.Duration("heartbeat-interval", envDuration("FAKE_HEARTBEAT_INTERVAL", 41250*time.Millisecond), "HELLO heartbeat_interval (FAKE_HEARTBEAT_INTERVAL)")
	ackDelay := fs.Duration("heartbeat-ack-delay", envDuration("FAKE_HEARTBEAT_ACK_DELAY", 3*time.Millisecond), "heartbeat ACK delay (FAKE_HEARTBEAT_ACK_DELAY)")
	hbTimeout := fs.Duration("heartbeat-timeout", envDuration("FAKE_HEARTBEAT_TIMEOUT", 0), "close 4009 after this long without a heartbeat; 0 = off (FAKE_HEARTBEAT_TIMEOUT)")
	resumeWindow := fs.Duration("resume-window", envDuration("FAKE_RESUME_WINDOW", 2*time.Minute), "how long a detached session stays resumable (FAKE_RESUME_WINDOW)")
	replay := fs.Int("replay-buffer", envInt("FAKE_REPLAY_BUFFER", 10000), "dispatches kept per session for RESUME (FAKE_REPLAY_BUFFER)")
	helloDelay := fs.Duration("hello-delay", envDuration("FAKE_HELLO_DELAY", 0), "delay before HELLO (FAKE_HELLO_DELAY)")
	maxGuilds := fs.Int("max-guilds-per-shard", envInt("FAKE_MAX_GUILDS_PER_SHARD", 0), "close 4011 above this many guilds per shard; 0 = off (FAKE_MAX_GUILDS_PER_SHARD)")
	echo := fs.Bool("echo-messages", envBool("FAKE_ECHO_MESSAGES"), "dispatch MESSAGE_CREATE for messages posted over REST (FAKE_ECHO_MESSAGES)")
	ignoreIntents := fs.Bool("ignore-intents", envBool("FAKE_IGNORE_INTENTS"), "deliver every event whatever the intents (default: gate events and message content by intents, as Discord does) (FAKE_IGNORE_INTENTS)")
	seed := fs.Int64("seed", int64(envInt("FAKE_SEED", 1)), "world seed (FAKE_SEED)")
	guilds := fs.Int("guilds", envInt("FAKE_GUILDS", 10), "guilds in the world (FAKE_GUILDS)")
	channels := fs.Int("channels-per-guild", envInt("FAKE_CHANNELS_PER_GUILD", 5), "channels per guild (FAKE_CHANNELS_PER_GUILD)")
	roles := fs.Int("roles-per-guild", envInt("FAKE_ROLES_PER_GUILD", 3), "roles per guild incl. @everyone (FAKE_ROLES_PER_GUILD)")
	members := fs.Int("members-per-guild", envInt("FAKE_MEMBERS_PER_GUILD", 5), "human members per guild (FAKE_MEMBERS_PER_GUILD)")
	users := fs.Int("users", envInt("FAKE_USERS", 50), "user pool size (FAKE_USERS)")
	logLevel := fs.String("log", envString("FAKE_LOG", "info"), "log level: debug, info, warn, error (FAKE_LOG)")
	if err := fs.Parse(args); err != nil {
		return err
	}

	var level slog.Level
	if err := level.UnmarshalText([]byte(*logLevel)); err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	if *guilds == 0 {
		*guilds = -1
	}
	// Signals end the program even while a big world is being built.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv, err := discordtest.NewServerContext(ctx, discordtest.Options{
		Addr: *addr, AppID: snowflake.ID(*appID), Token: *token, Shards: *shards,
		MaxConcurrency: *maxConc, SessionStartTotal: *sessionTotal, IdentifyWindow: *identifyWindow,
		ViolationAction: *violation, HeartbeatInterval: *heartbeat, HeartbeatACKDelay: *ackDelay,
		HeartbeatTimeout: *hbTimeout, ResumeWindow: *resumeWindow, ReplayBuffer: *replay,
		HelloDelay: *helloDelay, MaxGuildsPerShard: *maxGuilds, EchoMessages: *echo, IgnoreIntents: *ignoreIntents,
		Logger: logger,
		World: discordtest.WorldOptions{
			Seed: *seed, Guilds: *guilds, ChannelsPerGuild: *channels, RolesPerGuild: *roles,
			MembersPerGuild: *members, Users: *users,
		},
	})
	if err != nil {
		return err
	}
	defer srv.Close()

	fmt.Printf("REST URL:    %s\n", srv.RESTURL())
	fmt.Printf("Gateway URL: %s\n", srv.GatewayURL())
	fmt.Printf("Token:       %s\n", srv.Token())
	fmt.Printf("App ID:      %s\n", srv.AppID())
	fmt.Printf("Control:     %s/_fake/  (stats, messages, world, message, dispatch, control, config, ratelimit, metrics; see -h)\n", srv.URL())
	fmt.Printf("Try:         curl -d '{\"content\":\"!ping\"}' %s/_fake/message\n", srv.URL())

	<-ctx.Done()
	logger.Info("shutting down", "identifies", srv.Stats().Identifies)
	return nil
}
