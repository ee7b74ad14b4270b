package cluster_test

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"sync/atomic"
	"syscall"

	"github.com/disgoorg/disgo/bot"
	"github.com/disgoorg/disgo/discord"
	"github.com/disgoorg/disgo/events"
	"github.com/disgoorg/disgo/gateway"

	"github.com/megane-go/megane/cache"
	"github.com/megane-go/megane/cluster"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/redisconn"
	"github.com/megane-go/megane/redisipc"
)

// pingWorker answers "!ping" in every guild of its shards.
type pingWorker struct{}

func (pingWorker) Launch(_ context.Context, c *cluster.Cluster) error {
	c.Client.AddEventListeners(bot.NewListenerFunc(func(e *events.MessageCreate) {
		if e.Message.Content == "!ping" {
			_, _ = c.Client.Rest.CreateMessage(e.ChannelID, discord.MessageCreate{Content: "pong"})
		}
	}))
	return nil
}

// A cluster process normally comes from the launcher; this is what it runs.
// SIGTERM stops it resumably: the next start RESUMEs every shard.
func ExampleRun() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	rdb, err := redisconn.Open(ctx, os.Getenv("REDIS_URL"))
	if err != nil {
		slog.Error("redis", slog.Any("error", err))
		return
	}
	defer rdb.Close()

	err = cluster.Run(ctx, cluster.Options{
		ID:         0,
		ShardIDs:   []int{0, 1},
		ShardCount: 4,
		Token:      os.Getenv("DISCORD_TOKEN"),
		// Reading "!ping" in guilds needs the (privileged) MESSAGE_CONTENT intent.
		Intents: cluster.DefaultIntents | gateway.IntentMessageContent,
		Redis:   rdb,
		Keys:    keyspace.MustNew("mybot"),
	}, pingWorker{})
	if err != nil {
		slog.Error("cluster", slog.Any("error", err))
	}
}

// guildInfoWorker shows what a cluster shares with the rest of the bot.
type guildInfoWorker struct{}

func (guildInfoWorker) Launch(ctx context.Context, c *cluster.Cluster) error {
	var served atomic.Int64
	// A cluster command any process can run on the cluster owning a guild
	// (node.CommandGuild(ctx, guildID, "guildName", payload)).
	c.IPC.HandleCommand("guildName", func(ctx context.Context, req *redisipc.Request) ([]byte, error) {
		served.Add(1)
		var id uint64
		if err := req.Decode(&id); err != nil {
			return nil, err
		}
		// From the projection, or from the cluster that owns the guild.
		g, err := c.Fetch.FetchGuild(ctx, id)
		if err != nil {
			return nil, err
		}
		return json.Marshal(g.Name)
	})
	// Eval values: megane-cli eval 'commands_served'.
	c.IPC.EvalEnv().Provide("commands_served", func() any { return served.Load() })
	// A statistic in HGETALL megane:<ns>:stats:cluster:<id>.
	_ = c.Stats.Add("commands_served", func(context.Context) any { return served.Load() })
	// A kind other processes can Fetch from the cluster owning the guild.
	c.Owners.Handle("voice_state", cache.OwnerSourceFunc(func(ctx context.Context, _ cache.Entity, guild, user uint64) ([]byte, error) {
		return nil, fmt.Errorf("no voice state of %d in %d: %w", user, guild, cache.ErrNotFound)
	}))
	return nil
}

// Options.Cache chooses what the projection keeps; a fetch that needs more
// asks the cluster owning the guild.
func ExampleRun_cache() {
	ctx := context.Background()
	rdb, err := redisconn.Open(ctx, os.Getenv("REDIS_URL"))
	if err != nil {
		return
	}
	defer rdb.Close()
	err = cluster.Run(ctx, cluster.Options{
		ShardCount: 4,
		Token:      os.Getenv("DISCORD_TOKEN"),
		// Reading "!ping" in guilds needs the (privileged) MESSAGE_CONTENT intent.
		Intents: cluster.DefaultIntents | gateway.IntentMessageContent,
		Redis:   rdb,
		Keys:    keyspace.MustNew("mybot"),
		Cache: &cache.Config{
			Entities: []cache.Entity{cache.EntityGuild, cache.EntityChannel, cache.EntityRole},
			Fields: map[cache.Entity][]string{
				cache.EntityChannel: append(slices.Clone(cache.DefaultFields[cache.EntityChannel]), "topic"),
			},
		},
	}, guildInfoWorker{})
	if err != nil {
		slog.Error("cluster", slog.Any("error", err))
	}
}
