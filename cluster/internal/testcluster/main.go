// Command testcluster is one cluster process for the cluster package's
// integration tests. disgo v0.19.6 has data races, so a gateway must never
// run inside the race-enabled test binary: the tests build this program
// without -race and run it as a child process against the fake Discord in
// the test process.
//
// It runs cluster.Run configured from the environment, answers every
// MESSAGE_CREATE by posting "seen <content>" to the same channel (so the
// fake's Messages() shows what the cluster handled), and prints one JSON
// line per notable thing on stdout: {"ev":"ready"}, {"ev":"message",...},
// {"ev":"raw",...} (OnRawEvent) and {"ev":"raw_listener",...} (a disgo Raw
// listener) for each MESSAGE_CREATE, {"ev":"stopped"} or
// {"ev":"error","err":...}. SIGTERM and SIGINT stop it
// resumably.
//
// Environment: TC_REDIS_URL, TC_NAMESPACE, TC_CLUSTER_ID, TC_SHARDS (comma
// list), TC_SHARD_COUNT, TC_MAX_CONCURRENCY, TC_TOKEN, TC_REST_URL,
// TC_LIMITER, TC_IDENTIFY_WINDOW_MS, TC_SYNC_MS.
package main

import (
	"context"
	"io"
	"time"

	"github.com/disgoorg/disgo/bot"
	"github.com/disgoorg/disgo/discord"
	"github.com/disgoorg/disgo/events"
	"github.com/disgoorg/disgo/gateway"

	"github.com/megane-go/megane/cluster"
	"github.com/megane-go/megane/internal/testenv"
)

var (
	env  = testenv.Env("TC_")
	emit = testenv.Emit
	fail = testenv.Fail
)

type worker struct{}

func (worker) Launch(_ context.Context, c *cluster.Cluster) error {
	c.Client.AddEventListeners(bot.NewListenerFunc(func(e *events.MessageCreate) {
		msg := e.Message
		emit(map[string]any{"ev": "message", "shard": e.ShardID(), "seq": e.SequenceNumber(), "content": msg.Content})
		// Reply synchronously: the event counts as handled once this
		// listener returns, so the reply is part of handling it.
		_, err := c.Client.Rest.CreateMessage(msg.ChannelID, discord.MessageCreate{Content: "seen " + msg.Content})
		if err != nil {
			emit(map[string]any{"ev": "error", "err": err.Error()})
		}
	}))
	// A user's Raw listener must still get the whole payload after
	// OnRawEvent took its copy.
	c.Client.AddEventListeners(bot.NewListenerFunc(func(e *events.Raw) {
		if e.EventType != gateway.EventTypeMessageCreate {
			return
		}
		b, _ := io.ReadAll(e.Payload)
		emit(map[string]any{"ev": "raw_listener", "shard": e.ShardID(), "seq": e.SequenceNumber(), "len": len(b)})
	}))
	return nil
}

func main() {
	ctx, stop := testenv.SignalContext()
	defer stop()
	rdb, ks, err := env.Connect(ctx)
	if err != nil {
		fail(err)
	}
	defer rdb.Close()
	shards, err := env.Shards("SHARDS")
	if err != nil {
		fail(err)
	}
	opts := cluster.Options{
		ID:                  env.Int("CLUSTER_ID"),
		ShardIDs:            shards,
		ShardCount:          env.Int("SHARD_COUNT"),
		MaxConcurrency:      env.Int("MAX_CONCURRENCY"),
		Token:               env.String("TOKEN"),
		RESTURL:             env.String("REST_URL"),
		Intents:             cluster.DefaultIntents | gateway.IntentMessageContent,
		Redis:               rdb,
		Keys:                ks,
		Logger:              env.Logger(),
		Limiter:             env.String("LIMITER"),
		IdentifyWindow:      env.Millis("IDENTIFY_WINDOW_MS"),
		SessionSyncInterval: env.Millis("SYNC_MS"),
		HeartbeatInterval:   500 * time.Millisecond,
		OnReady:             func() { emit(map[string]any{"ev": "ready"}) },
		OnRawEvent: func(shard int, eventType string, data []byte) {
			if eventType == string(gateway.EventTypeMessageCreate) {
				emit(map[string]any{"ev": "raw", "shard": shard, "len": len(data)})
			}
		},
	}
	if err := cluster.Run(ctx, opts, worker{}); err != nil {
		fail(err)
	}
	emit(map[string]any{"ev": "stopped"})
}
