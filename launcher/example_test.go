package launcher_test

import (
	"context"
	"fmt"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/launcher"
	"github.com/megane-go/megane/stats"
)

// reportTotals is master code in Megane's sense: it runs in the launcher
// process and publishes, with the launcher's own statistics, the bot's
// guild count added up from every cluster's.
func reportTotals(ctx context.Context, h *launcher.Handles) {
	_ = h.Stats.Add("bot_guilds", func(ctx context.Context) any {
		b, err := h.BotStats(ctx)
		if err != nil {
			return err
		}
		return int64(stats.Sum(b.Clusters, "guilds"))
	})
	// OnStart may also stay: ctx ends when the launcher stops.
}

func ExampleConfig_onStart() {
	// A bot sets the hook:
	//
	//	launcher.Run(ctx, launcher.Config{Worker: bot{}, OnStart: reportTotals})
	//
	// Here the launcher's handles are built by hand over an in-memory
	// Redis, in which two clusters and a service copy have published their
	// statistics.
	m, _ := miniredis.Run()
	defer m.Close()
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer rdb.Close()
	ks := keyspace.MustNew("example")
	ctx := context.Background()
	for name, guilds := range map[string]int{"cluster:0": 1200, "cluster:1": 1150} {
		r := stats.NewReporter(rdb, ks, name, stats.Options{})
		_ = r.Add("guilds", func(context.Context) any { return guilds })
		_ = r.Publish(ctx)
	}
	twitch := stats.NewReporter(rdb, ks, "service:twitch:0", stats.Options{})
	twitch.AddSource(func(context.Context) map[string]any { return map[string]any{"streams": 42} }) // a services.Statser
	_ = twitch.Publish(ctx)

	h := &launcher.Handles{Redis: rdb, Keys: ks, Stats: stats.NewReporter(rdb, ks, "launcher", stats.Options{})}
	reportTotals(ctx, h)
	_ = h.Stats.Publish(ctx)

	b, _ := h.BotStats(ctx)
	streams, _ := b.Services["twitch"][0].Int("streams")
	total, _ := b.Launcher.Int("bot_guilds")
	fmt.Println("clusters:", len(b.Clusters))
	fmt.Println("twitch streams:", streams)
	fmt.Println("bot guilds:", total)
	// Output:
	// clusters: 2
	// twitch streams: 42
	// bot guilds: 2350
}
