package cluster_test

import (
	"context"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/disgoorg/disgo/bot"
	"github.com/disgoorg/disgo/discord"
	"github.com/disgoorg/disgo/events"

	"github.com/megane-go/megane/cluster"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/redisconn"
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
		slog.Error("redis", slog.Any("err", err))
		return
	}
	defer rdb.Close()

	err = cluster.Run(ctx, cluster.Options{
		ID:         0,
		ShardIDs:   []int{0, 1},
		ShardCount: 4,
		Token:      os.Getenv("DISCORD_TOKEN"),
		Redis:      rdb,
		Keys:       keyspace.MustNew("mybot"),
	}, pingWorker{})
	if err != nil {
		slog.Error("cluster", slog.Any("err", err))
	}
}
