// Command e2ebot is the bot of the end-to-end tests: one cluster process
// (E2E_ROLE=cluster, cluster.Run) or one service copy (E2E_ROLE=service,
// services.Run), configured from the environment. disgo v0.19.6 has data
// races, so a gateway must never run inside the race-enabled test binary:
// the tests build this program without -race and run it as child processes
// against the fake Discord in the test process.
//
// It prints one JSON line per notable thing on stdout: {"ev":"ready"},
// {"ev":"stopped"} or {"ev":"error","err":...}. SIGTERM and SIGINT stop it.
//
// The cluster adds to what cluster.Run provides: the eval value
// e2e_marker ("cluster-<id>"), the stats field e2e_marker, and the owner
// kind "guild_owner", answered with {"id", "cluster", "shard_id", "name"}
// (the name from REST), which the projection never holds.
//
// The service "e2e" answers:
//
//	typed  {guild, channel, user}            -> {guild, channel, user} via FetchGuild/FetchChannel/FetchUser
//	fetch  {kind, guild, ids, fields}        -> Fetch's map of id -> fields
//	fetch  {kind, guild, ids, fields, sources: true} -> {items: that map, sources: id -> cache.Source}
//	owner  {guild}                           -> the owning cluster's address
//
// Environment: E2E_ROLE, E2E_REDIS_URL, E2E_NAMESPACE, E2E_CLUSTER_ID,
// E2E_SHARDS (comma list), E2E_SHARD_COUNT, E2E_MAX_CONCURRENCY, E2E_TOKEN,
// E2E_REST_URL, E2E_IPC_TTL_MS, E2E_STATS_MS, E2E_DEBUG.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/disgoorg/disgo/gateway"
	"github.com/disgoorg/disgo/rest"
	"github.com/disgoorg/snowflake/v2"

	"github.com/megane-go/megane/cache"
	"github.com/megane-go/megane/cluster"
	"github.com/megane-go/megane/internal/testenv"
	"github.com/megane-go/megane/redisipc"
	"github.com/megane-go/megane/services"
	"github.com/megane-go/megane/stats"
)

// KindGuildOwner is the owner kind the cluster registers on its OwnerMux.
const KindGuildOwner cache.Entity = "guild_owner"

var (
	env  = testenv.Env("E2E_")
	emit = testenv.Emit
	fail = testenv.Fail
)

func main() {
	logger := env.Logger()
	ctx, stop := testenv.SignalContext()
	defer stop()
	rdb, ks, err := env.Connect(ctx)
	if err != nil {
		fail(err)
	}
	defer rdb.Close()
	ipc := redisipc.Options{HeartbeatTTL: env.Millis("IPC_TTL_MS")}
	st := stats.Options{Interval: env.Millis("STATS_MS")}

	switch role := env.String("ROLE"); role {
	case "cluster":
		shards, serr := env.Shards("SHARDS")
		if serr != nil {
			fail(serr)
		}
		err = cluster.Run(ctx, cluster.Options{
			ID:             env.Int("CLUSTER_ID"),
			ShardIDs:       shards,
			ShardCount:     env.Int("SHARD_COUNT"),
			MaxConcurrency: env.Int("MAX_CONCURRENCY"),
			Token:          env.String("TOKEN"),
			RESTURL:        env.String("REST_URL"),
			// GUILD_PRESENCES: without it GUILD_CREATE lists only the bot, and the
			// tests compare every member's projection.
			Intents:           cluster.DefaultIntents | gateway.IntentGuildMembers | gateway.IntentGuildPresences,
			Redis:             rdb,
			Keys:              ks,
			Logger:            logger,
			IdentifyWindow:    100 * time.Millisecond,
			HeartbeatInterval: 500 * time.Millisecond,
			IPC:               ipc,
			Stats:             st,
			OnReady:           func() { emit(map[string]any{"ev": "ready"}) },
		}, clusterWorker{})
	case "service":
		err = services.Run(ctx, services.Options{
			Name: "e2e", Redis: rdb, Keys: ks, Logger: logger, IPC: ipc, Stats: st,
			OnReady: func() { emit(map[string]any{"ev": "ready"}) },
		}, serviceWorker{})
	default:
		err = fmt.Errorf("E2E_ROLE %q is neither cluster nor service", role)
	}
	if err != nil && !errors.Is(err, context.Canceled) {
		fail(err)
	}
	emit(map[string]any{"ev": "stopped"})
}

type clusterWorker struct{}

func (clusterWorker) Launch(_ context.Context, c *cluster.Cluster) error {
	marker := fmt.Sprintf("cluster-%d", c.ID)
	c.IPC.EvalEnv().Set("e2e_marker", marker)
	if err := c.Stats.Add("e2e_marker", func(context.Context) any { return marker }); err != nil {
		return err
	}
	c.Owners.Handle(KindGuildOwner, cache.OwnerSourceFunc(func(ctx context.Context, _ cache.Entity, _, id uint64) ([]byte, error) {
		g, err := c.Client.Rest.GetGuild(snowflake.ID(id), false, rest.WithCtx(ctx))
		if err != nil {
			return nil, fmt.Errorf("guild %d: %w: %w", id, cache.ErrNotFound, err)
		}
		return json.Marshal(map[string]any{
			"id": strconv.FormatUint(id, 10), "cluster": c.ID,
			"shard_id": cache.ShardOf(id, c.ShardCount), "name": g.Name,
		})
	}))
	return nil
}

type serviceWorker struct{}

func (serviceWorker) Launch(context.Context, *services.Service) error { return nil }

// ids are snowflakes as strings, as everywhere on the wire.
type typedIn struct {
	Guild   uint64 `json:"guild,string"`
	Channel uint64 `json:"channel,string"`
	User    uint64 `json:"user,string"`
}

type typedOut struct {
	Guild   cache.Guild   `json:"guild"`
	Channel cache.Channel `json:"channel"`
	User    cache.User    `json:"user"`
}

type fetchIn struct {
	Kind   cache.Entity `json:"kind"`
	Guild  uint64       `json:"guild,string"`
	IDs    []string     `json:"ids"`
	Fields []string     `json:"fields"`
	// Sources asks for {items, sources} (cache.WithSources).
	Sources bool `json:"sources"`
}

func (serviceWorker) HandleCommand(ctx context.Context, s *services.Service, cmd services.Command) (any, error) {
	switch cmd.Op {
	case "typed":
		var in typedIn
		if err := cmd.Decode(&in); err != nil {
			return nil, err
		}
		var out typedOut
		var err error
		if out.Guild, err = s.Fetch.FetchGuild(ctx, in.Guild); err != nil {
			return nil, err
		}
		if out.Channel, err = s.Fetch.FetchChannel(ctx, in.Channel); err != nil {
			return nil, err
		}
		if out.User, err = s.Fetch.FetchUser(ctx, in.User); err != nil {
			return nil, err
		}
		return out, nil
	case "fetch":
		var in fetchIn
		if err := cmd.Decode(&in); err != nil {
			return nil, err
		}
		ids := make([]uint64, 0, len(in.IDs))
		for _, s := range in.IDs {
			id, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return nil, err
			}
			ids = append(ids, id)
		}
		var opts []cache.FetchOption
		if len(in.Fields) > 0 {
			opts = append(opts, cache.WithFields(in.Fields...))
		}
		from := map[uint64]cache.Source{}
		if in.Sources {
			opts = append(opts, cache.WithSources(from))
		}
		got, err := s.Fetch.Fetch(ctx, in.Kind, in.Guild, ids, opts...)
		if err != nil {
			return nil, err
		}
		out := make(map[string]map[string]string, len(got))
		sources := make(map[string]cache.Source, len(from))
		for id, m := range got {
			out[strconv.FormatUint(id, 10)] = m
			sources[strconv.FormatUint(id, 10)] = from[id]
		}
		if in.Sources {
			return map[string]any{"items": out, "sources": sources}, nil
		}
		return out, nil
	case "owner":
		var in typedIn
		if err := cmd.Decode(&in); err != nil {
			return nil, err
		}
		return s.Fetch.Owner(ctx, in.Guild)
	}
	return nil, fmt.Errorf("e2e: %q: %w", cmd.Op, redisipc.ErrUnknownOp)
}
