// Command testbot is the bot the launcher's integration tests and benchmark
// run as real processes. It answers every user message by posting
// "seen:<message id>" to the channel, so the fake Discord's record of posted
// messages proves which events the bot handled and how often.
//
// It is built without the race detector on purpose: disgo v0.19.6 races in
// normal operation, so a gateway must never run inside a -race binary.
//
// TESTBOT_CRASH_CLUSTER=<id> makes that cluster's Launch fail (a crash at
// start); TESTBOT_SERVICE=1 registers the service "echo", whose Launch fails
// while the file TESTBOT_SERVICE_CRASH_FILE names exists.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"time"

	"github.com/disgoorg/disgo/bot"
	"github.com/disgoorg/disgo/discord"
	"github.com/disgoorg/disgo/events"
	"github.com/disgoorg/disgo/gateway"
	"github.com/disgoorg/disgo/rest"

	"github.com/megane-go/megane/cluster"
	"github.com/megane-go/megane/launcher"
	"github.com/megane-go/megane/lifecycle"
	"github.com/megane-go/megane/services"
)

type worker struct{}

func (worker) Launch(_ context.Context, c *cluster.Cluster) error {
	if v := os.Getenv("TESTBOT_CRASH_CLUSTER"); v != "" && v == strconv.Itoa(c.ID) {
		return errors.New("testbot: crashing at start on purpose")
	}
	c.Client.AddEventListeners(bot.NewListenerFunc(func(e *events.MessageCreate) {
		if e.Message.Author.Bot {
			return
		}
		// Synchronous on purpose: the sequence is saved after the listener
		// returned, so the post is part of handling the event.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_, err := c.Client.Rest.CreateMessage(e.ChannelID,
			discord.MessageCreate{Content: "seen:" + e.MessageID.String()}, rest.WithCtx(ctx))
		if err != nil {
			c.Logger.Warn("testbot: post failed", slog.Any("error", err))
		}
	}))
	return nil
}

type echo struct{}

func (echo) Launch(context.Context, *services.Service) error {
	if f := os.Getenv("TESTBOT_SERVICE_CRASH_FILE"); f != "" {
		if _, err := os.Stat(f); err == nil {
			return errors.New("testbot: service crashing at start on purpose")
		}
	}
	return nil
}

func (echo) HandleCommand(_ context.Context, s *services.Service, cmd services.Command) (any, error) {
	return json.RawMessage(cmd.Payload), nil
}

func main() {
	cfg := launcher.Config{
		Worker:  worker{},
		Intents: gateway.IntentGuilds | gateway.IntentGuildMessages | gateway.IntentMessageContent,
		OnEvent: func(ev lifecycle.Event) {
			// The tests read these lines to see what user code is told.
			fmt.Fprintf(os.Stderr, "testbot event: %s cluster=%d shard=%d service=%q\n", ev.Type, ev.Cluster, ev.Shard, ev.Service)
		},
	}
	if os.Getenv("TESTBOT_SERVICE") == "1" {
		cfg.Services = map[string]launcher.ServiceSpec{"echo": {Worker: echo{}}}
	}
	if err := launcher.Run(context.Background(), cfg); err != nil {
		fmt.Fprintln(os.Stderr, "testbot:", err)
		os.Exit(1)
	}
}
