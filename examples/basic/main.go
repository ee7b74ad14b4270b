// Command basic is a small Megane bot: it answers "!ping" with the cluster
// and shard that saw the message.
//
//	go run ./examples/basic                      # demo: fake Discord, embedded Redis
//	DISCORD_TOKEN=... REDIS_URL=redis://127.0.0.1:6379 go run ./examples/basic
//
// The same binary is the launcher and every cluster: launcher.Run looks at
// MEGANE_ROLE and either supervises or runs the shards it was given.
// Against real Discord, enable the privileged MESSAGE CONTENT intent of the
// application, or the bot never sees "!ping".
package main

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/disgoorg/disgo/bot"
	"github.com/disgoorg/disgo/discord"
	"github.com/disgoorg/disgo/events"
	"github.com/disgoorg/disgo/gateway"
	"github.com/disgoorg/disgo/rest"

	"github.com/megane-go/megane/cluster"
	"github.com/megane-go/megane/launcher"
	"github.com/megane-go/megane/lifecycle"
)

// pingBot is the cluster worker: Launch runs once in every cluster process.
type pingBot struct{}

func (pingBot) Launch(_ context.Context, c *cluster.Cluster) error {
	c.Client.AddEventListeners(bot.NewListenerFunc(func(e *events.MessageCreate) {
		if e.Message.Author.Bot || strings.TrimSpace(e.Message.Content) != "!ping" {
			return
		}
		// Answer before returning: the cluster saves an event's sequence
		// once its listeners returned, so after a crash an unanswered ping
		// is replayed rather than lost.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		content := fmt.Sprintf("pong from cluster %d shard %d", c.ID, e.ShardID())
		// A reply (message_reference) says which ping it answers.
		reply := discord.MessageCreate{Content: content, MessageReference: &discord.MessageReference{MessageID: &e.MessageID}}
		if _, err := c.Client.Rest.CreateMessage(e.ChannelID, reply, rest.WithCtx(ctx)); err != nil {
			c.Logger.Warn("cannot answer !ping", slog.Any("error", err))
		}
	}))
	return nil
}

func main() {
	err := launcher.Run(context.Background(), launcher.Config{
		Worker:  pingBot{},
		Intents: gateway.IntentGuilds | gateway.IntentGuildMessages | gateway.IntentMessageContent,
		OnEvent: func(ev lifecycle.Event) {
			if ev.Type == lifecycle.ClusterGaveUp {
				// Where a real bot would page someone.
				fmt.Fprintf(os.Stderr, "ALERT: cluster %d gave up: %s\n", ev.Cluster, ev.Detail)
			}
		},
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
}
