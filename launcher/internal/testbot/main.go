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
// while the file TESTBOT_SERVICE_CRASH_FILE names exists. TESTBOT_ONSTART=1
// sets Config.OnStart: the launcher then publishes bot_guilds (the clusters'
// guilds added up) and answers the op "testbot:shared" with what its
// handles reach (SharedReply).
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
	"github.com/megane-go/megane/redisipc"
	"github.com/megane-go/megane/services"
	"github.com/megane-go/megane/stats"
)

type worker struct{}

// version is the build's version (-ldflags "-X main.version=…"); every
// cluster answers the op "testbot:version" with it (and "testbot:shards"
// with its shards). crash, set the same
// way, makes every cluster of the build fail at start.
var version, crash = "v1", ""

func (worker) Launch(_ context.Context, c *cluster.Cluster) error {
	if v := os.Getenv("TESTBOT_CRASH_CLUSTER"); (v != "" && v == strconv.Itoa(c.ID)) || crash != "" {
		return errors.New("testbot: crashing at start on purpose")
	}
	c.IPC.Handle("testbot:version", func(context.Context, *redisipc.Request) ([]byte, error) {
		return json.Marshal(version)
	})
	// testbot:shards answers the shards this cluster runs, and the count.
	c.IPC.Handle("testbot:shards", func(context.Context, *redisipc.Request) ([]byte, error) {
		return json.Marshal(map[string]any{"shards": c.ShardIDs, "shard_count": c.ShardCount})
	})
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

func (echo) Launch(_ context.Context, s *services.Service) error {
	if f := os.Getenv("TESTBOT_SERVICE_CRASH_FILE"); f != "" {
		if _, err := os.Stat(f); err == nil {
			return errors.New("testbot: service crashing at start on purpose")
		}
	}
	return s.Stats.Add("echo_launched", func(context.Context) any { return 1 })
}

// Stats makes echo a services.Statser.
func (echo) Stats(context.Context) map[string]any {
	return map[string]any{"echo_kind": "echo", "echo_ratio": 0.5}
}

func (echo) HandleCommand(_ context.Context, s *services.Service, cmd services.Command) (any, error) {
	return json.RawMessage(cmd.Payload), nil
}

// SharedReply answers "testbot:shared": what the launcher process reads
// through its Handles.
type SharedReply struct {
	Clusters    int     `json:"clusters"`
	Guilds      float64 `json:"guilds"`        // stats.Sum of the clusters' guilds
	EchoKind    any     `json:"echo_kind"`     // the echo service's Statser field
	EchoRatio   any     `json:"echo_ratio"`    // another, a number
	EchoLaunch  any     `json:"echo_launched"` // its Stats.Add field
	Store       int64   `json:"store"`
	CacheName   string  `json:"cache_name"`
	FetchName   string  `json:"fetch_name"`
	ServiceEcho string  `json:"service_echo"` // services.Call from the launcher
}

func onStart(ctx context.Context, h *launcher.Handles) {
	_ = h.Stats.Add("bot_guilds", func(ctx context.Context) any {
		b, err := h.BotStats(ctx)
		if err != nil {
			return err
		}
		return int64(stats.Sum(b.Clusters, "guilds"))
	})
	h.IPC.Handle("testbot:shared", func(ctx context.Context, req *redisipc.Request) ([]byte, error) {
		var in struct {
			Guild uint64 `json:"guild,string"`
		}
		if err := req.Decode(&in); err != nil {
			return nil, err
		}
		b, err := h.BotStats(ctx)
		if err != nil {
			return nil, err
		}
		out := SharedReply{Clusters: len(b.Clusters), Guilds: stats.Sum(b.Clusters, "guilds")}
		if copies := b.Services["echo"]; len(copies) > 0 {
			f := copies[0].Fields
			out.EchoKind, out.EchoRatio, out.EchoLaunch = f["echo_kind"], f["echo_ratio"], f["echo_launched"]
		}
		if out.Store, err = h.Store.Bucket("testbot").Incr(ctx, "launcher", 1); err != nil {
			return nil, err
		}
		if g, err := h.Cache.Guild(ctx, in.Guild); err == nil {
			out.CacheName = g.Name
		}
		if g, err := h.Fetch.FetchGuild(ctx, in.Guild); err == nil {
			out.FetchName = g.Name
		}
		if os.Getenv("TESTBOT_SERVICE") == "1" {
			if err := services.Call(ctx, h.IPC, "echo", "say", "hi", &out.ServiceEcho); err != nil {
				return nil, err
			}
		}
		return json.Marshal(out)
	})
	h.Logger.Info("testbot: OnStart ran")
	<-ctx.Done() // OnStart may block: it has a goroutine of its own
	fmt.Fprintln(os.Stderr, "testbot: OnStart saw the stop")
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
	if os.Getenv("TESTBOT_ONSTART") == "1" {
		cfg.OnStart = onStart
	}
	if os.Getenv("TESTBOT_SERVICE") == "1" {
		cfg.Services = map[string]launcher.ServiceSpec{"echo": {Worker: echo{}}}
	}
	if err := launcher.Run(context.Background(), cfg); err != nil {
		fmt.Fprintln(os.Stderr, "testbot:", err)
		os.Exit(1)
	}
}
