// Command probebot is a real disgo v0.19.6 sharded bot used by discordtest's tests.
// It runs as a separate process because disgo's gateway has data races that would
// fail a race-enabled test binary. It prints one JSON line per event it sees on
// stdout, which the tests parse.
//
// Every flag can also be set through the environment variable named in its usage.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/disgoorg/disgo"
	"github.com/disgoorg/disgo/bot"
	"github.com/disgoorg/disgo/discord"
	"github.com/disgoorg/disgo/events"
	"github.com/disgoorg/disgo/gateway"
	"github.com/disgoorg/disgo/rest"
	"github.com/disgoorg/disgo/sharding"
	"github.com/megane-go/megane/internal/testenv"
)

// emit writes one event line, stamped with the time.
func emit(v map[string]any) {
	v["at"] = time.Now().UnixMilli()
	testenv.Emit(v)
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok {
		return v
	}
	return def
}

func main() {
	token := flag.String("token", env("PROBE_TOKEN", ""), "bot token (PROBE_TOKEN)")
	restURL := flag.String("rest", env("PROBE_REST_URL", ""), "REST base URL including /api/v10 (PROBE_REST_URL)")
	shardList := flag.String("shards", env("PROBE_SHARDS", ""), "comma-separated shard ids; empty = all (PROBE_SHARDS)")
	shardCount := flag.Int("count", atoi(env("PROBE_SHARD_COUNT", "0")), "total shard count; 0 = from /gateway/bot (PROBE_SHARD_COUNT)")
	compression := flag.String("compression", env("PROBE_COMPRESSION", "zstd"), "zstd, zlib, payload or none (PROBE_COMPRESSION)")
	maxConc := flag.Int("max-concurrency", atoi(env("PROBE_MAX_CONCURRENCY", "0")), "identify max concurrency; 0 = from /gateway/bot (PROBE_MAX_CONCURRENCY)")
	identifyWait := flag.Duration("identify-wait", dur(env("PROBE_IDENTIFY_WAIT", "0")), "identify limiter spacing; 0 = disgo default 5s (PROBE_IDENTIFY_WAIT)")
	limiter := flag.String("limiter", env("PROBE_LIMITER", "default"), "identify limiter: default or noop (PROBE_LIMITER)")
	reply := flag.Bool("reply", env("PROBE_REPLY", "") == "1", "answer a message \"ping\" with \"pong\" over REST (PROBE_REPLY=1)")
	logLevel := flag.String("log", env("PROBE_LOG", "warn"), "disgo log level on stderr: debug, info, warn, error (PROBE_LOG)")
	intents := flag.Int64("intents", int64(atoi(env("PROBE_INTENTS", "-1"))),
		"gateway intents; -1 = GUILDS|GUILD_MESSAGES|MESSAGE_CONTENT|GUILD_MEMBERS|GUILD_PRESENCES|DIRECT_MESSAGES (PROBE_INTENTS)")
	flag.Parse()

	var level slog.Level
	_ = level.UnmarshalText([]byte(*logLevel))
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
	slog.SetDefault(logger)

	shardOpts := []sharding.ConfigOpt{
		sharding.WithLogger(logger),
		sharding.WithGatewayConfigOpts(
			gateway.WithIntents(probeIntents(*intents)),
			gateway.WithCompression(compressionType(*compression)),
			gateway.WithEnableRawEvents(true),
			gateway.WithLogger(logger),
		),
	}
	ids, serr := testenv.Shards(*shardList)
	if serr != nil {
		emit(map[string]any{"ev": "error", "op": "shards", "err": serr.Error()})
		os.Exit(2)
	}
	if len(ids) > 0 {
		shardOpts = append(shardOpts, sharding.WithShardIDs(ids...))
	}
	if *shardCount > 0 {
		shardOpts = append(shardOpts, sharding.WithShardCount(*shardCount))
	}
	var limiterOpts []gateway.IdentifyRateLimiterConfigOpt
	if *maxConc > 0 {
		limiterOpts = append(limiterOpts, gateway.WithIdentifyMaxConcurrency(*maxConc))
	}
	if *identifyWait > 0 {
		limiterOpts = append(limiterOpts, gateway.WithIdentifyWait(*identifyWait))
	}
	if len(limiterOpts) > 0 {
		shardOpts = append(shardOpts, sharding.WithIdentifyRateLimiterConfigOpt(limiterOpts...))
	}
	if *limiter == "noop" {
		shardOpts = append(shardOpts, sharding.WithIdentifyRateLimiter(gateway.NewNoopIdentifyRateLimiter()))
	}

	opts := []bot.ConfigOpt{
		bot.WithLogger(logger),
		bot.WithShardManagerConfigOpts(shardOpts...),
		bot.WithEventListenerFunc(func(e *events.Ready) {
			emit(map[string]any{"ev": "ready", "shard": e.ShardID(), "seq": e.SequenceNumber(),
				"session_id": e.SessionID, "shard_count": e.Shard[1], "guilds": len(e.Guilds)})
		}),
		bot.WithEventListenerFunc(func(e *events.Resumed) {
			emit(map[string]any{"ev": "resumed", "shard": e.ShardID(), "seq": e.SequenceNumber()})
		}),
		bot.WithEventListenerFunc(func(e *events.GuildReady) { guildCreate("ready", e.GenericGuild, e.Guild) }),
		bot.WithEventListenerFunc(func(e *events.GuildJoin) { guildCreate("join", e.GenericGuild, e.Guild) }),
		bot.WithEventListenerFunc(func(e *events.GuildAvailable) { guildCreate("available", e.GenericGuild, e.Guild) }),
		bot.WithEventListenerFunc(func(e *events.MessageCreate) {
			ev := map[string]any{"ev": "message_create", "shard": e.ShardID(), "seq": e.SequenceNumber(),
				"id": e.MessageID.String(), "channel_id": e.ChannelID.String(), "content": e.Message.Content,
				"author_id": e.Message.Author.ID.String()}
			if e.GuildID != nil {
				ev["guild_id"] = e.GuildID.String()
			}
			emit(ev)
			if *reply && e.Message.Content == "ping" {
				go func() {
					m, err := e.Client().Rest.CreateMessage(e.ChannelID, discord.MessageCreate{Content: "pong"})
					if err != nil {
						emit(map[string]any{"ev": "error", "op": "create_message", "err": err.Error()})
						return
					}
					emit(map[string]any{"ev": "replied", "id": m.ID.String(), "channel_id": m.ChannelID.String(), "content": m.Content})
				}()
			}
		}),
		bot.WithEventListenerFunc(func(e *events.Raw) {
			emit(map[string]any{"ev": "raw", "t": string(e.EventType), "shard": e.ShardID(), "seq": e.SequenceNumber()})
		}),
	}
	if *restURL != "" {
		opts = append(opts, bot.WithRestClientConfigOpts(rest.WithURL(*restURL)))
	}

	client, err := disgo.New(*token, opts...)
	if err != nil {
		emit(map[string]any{"ev": "error", "op": "new", "err": err.Error()})
		os.Exit(2)
	}
	ctx, stop := testenv.SignalContext()
	defer stop()
	if err := client.OpenShardManager(ctx); err != nil {
		emit(map[string]any{"ev": "error", "op": "open", "err": err.Error()})
		os.Exit(2)
	}
	emit(map[string]any{"ev": "opened"})
	<-ctx.Done()
	closeCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	client.Close(closeCtx)
	emit(map[string]any{"ev": "closed"})
}

func guildCreate(kind string, g *events.GenericGuild, guild discord.GatewayGuild) {
	emit(map[string]any{"ev": "guild_create", "kind": kind, "shard": g.ShardID(), "seq": g.SequenceNumber(),
		"guild_id": g.GuildID.String(), "channels": len(guild.Channels), "members": len(guild.Members), "roles": len(guild.Roles)})
}

func probeIntents(n int64) gateway.Intents {
	if n < 0 {
		return gateway.IntentGuilds | gateway.IntentGuildMessages | gateway.IntentMessageContent |
			gateway.IntentGuildMembers | gateway.IntentGuildPresences | gateway.IntentDirectMessages
	}
	return gateway.Intents(n)
}

func compressionType(s string) gateway.CompressionType {
	switch s {
	case "zstd", "zstd-stream":
		return gateway.CompressionZstdStream
	case "zlib", "zlib-stream":
		return gateway.CompressionZlibStream
	case "payload", "zlib-payload":
		return gateway.CompressionZlibPayload
	case "none", "":
		return gateway.CompressionNone
	}
	fmt.Fprintf(os.Stderr, "unknown compression %q\n", s)
	os.Exit(2)
	return ""
}

func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

func dur(s string) time.Duration {
	d, err := time.ParseDuration(s)
	if err != nil {
		return 0
	}
	return d
}
