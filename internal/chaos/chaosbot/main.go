// Command chaosbot is the bot the chaos suite (scripts/chaos) runs and
// attacks. It is a whole Megane bot: launcher.Run, its clusters and the
// service "slow".
//
// Every user message is answered over REST with "seen:<content>", so the
// fake Discord's record of posted messages tells which events the bot
// handled and how often, without asking Redis (which the suite takes down).
// The answer is posted before the listener returns: the cluster saves an
// event's sequence once its listeners returned, so after a crash an
// unanswered message is replayed rather than lost.
//
// The service "slow" (CHAOSBOT_SLOW_COPIES copies, default 2) answers "work"
// {"ms": n} after n milliseconds (or when the call's deadline passes) with
// {"pid": its pid}.
//
// It is built without the race detector: disgo v0.19.6 races in normal
// operation.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/disgoorg/disgo/bot"
	"github.com/disgoorg/disgo/discord"
	"github.com/disgoorg/disgo/events"
	"github.com/disgoorg/disgo/gateway"
	"github.com/disgoorg/disgo/rest"

	"github.com/megane-go/megane/cluster"
	"github.com/megane-go/megane/launcher"
	"github.com/megane-go/megane/redisipc"
	"github.com/megane-go/megane/services"
)

type worker struct{}

func (worker) Launch(_ context.Context, c *cluster.Cluster) error {
	c.Client.AddEventListeners(bot.NewListenerFunc(func(e *events.MessageCreate) {
		if e.Message.Author.Bot || !strings.HasPrefix(e.Message.Content, "chaos:") {
			return
		}
		for attempt := 0; attempt < 3; attempt++ {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, err := c.Client.Rest.CreateMessage(e.ChannelID,
				discord.MessageCreate{Content: "seen:" + e.Message.Content}, rest.WithCtx(ctx))
			cancel()
			if err == nil {
				return
			}
			c.Logger.Warn("chaosbot: answer failed", slog.Any("error", err))
		}
	}))
	return nil
}

type slow struct{}

func (slow) Launch(context.Context, *services.Service) error { return nil }

func (slow) HandleCommand(ctx context.Context, _ *services.Service, cmd services.Command) (any, error) {
	if cmd.Op != "work" {
		return nil, fmt.Errorf("slow: %q: %w", cmd.Op, redisipc.ErrUnknownOp)
	}
	var in struct {
		MS int `json:"ms"`
	}
	if err := json.Unmarshal(cmd.Payload, &in); err != nil {
		return nil, err
	}
	t := time.NewTimer(time.Duration(in.MS) * time.Millisecond)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return map[string]int{"pid": os.Getpid()}, nil
}

func main() {
	copies := 2
	if v, err := strconv.Atoi(os.Getenv("CHAOSBOT_SLOW_COPIES")); err == nil {
		copies = v
	}
	cfg := launcher.Config{
		Worker:  worker{},
		Intents: gateway.IntentGuilds | gateway.IntentGuildMessages | gateway.IntentMessageContent,
	}
	if copies > 0 {
		cfg.Services = map[string]launcher.ServiceSpec{"slow": {Worker: slow{}, Copies: copies}}
	}
	if err := launcher.Run(context.Background(), cfg); err != nil {
		fmt.Fprintln(os.Stderr, "chaosbot:", err)
		os.Exit(1)
	}
}
