package discordtest_test

import (
	"context"
	"fmt"
	"time"

	"github.com/megane-go/megane/discordtest"
)

// A test starts a fake Discord, points a bot at it and injects events. A disgo bot
// would use:
//
//	disgo.New(srv.Token(),
//		bot.WithRestClientConfigOpts(rest.WithURL(srv.RESTURL())),
//		bot.WithShardManagerConfigOpts(sharding.WithShardIDs(0, 1), sharding.WithShardCount(2)))
//
// The gateway URL comes from GET /gateway/bot.
func Example() {
	srv, err := discordtest.NewServer(discordtest.Options{
		Shards:         2,
		MaxConcurrency: 2,
		World:          discordtest.WorldOptions{Seed: 1, Guilds: 4},
	})
	if err != nil {
		panic(err)
	}
	defer srv.Close()

	fmt.Println("token:", srv.Token())
	world := srv.World()
	for shard := 0; shard < 2; shard++ {
		fmt.Printf("shard %d owns %d guilds\n", shard, len(world.GuildsOfShard(shard, 2)))
	}

	// No bot is connected yet: the event has no session to go to, but the world is
	// updated, so REST already reports the new name.
	g := world.Guilds[0]
	_, err = srv.Dispatch(g.ID, "GUILD_UPDATE", map[string]any{"id": g.ID, "name": "Renamed"})
	fmt.Println("dispatch:", err)
	renamed, _ := srv.World().Guild(g.ID)
	fmt.Println("name:", renamed.Name)

	// Tests wait on conditions instead of sleeping.
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	err = srv.WaitFor(ctx, func(s *discordtest.Server) bool { return s.SessionStartRemaining() == 1000 })
	fmt.Println("wait:", err)

	st := srv.Stats()
	fmt.Println("identifies:", st.Identifies, "violations:", len(st.Violations))
	// Output:
	// token: MTEwMDAwMDAwMDAwMDAwMDAwMQ.fake.token
	// shard 0 owns 2 guilds
	// shard 1 owns 2 guilds
	// dispatch: discordtest: no session for that shard
	// name: Renamed
	// wait: <nil>
	// identifies: 0 violations: 0
}

func ExampleShardFor() {
	fmt.Println(discordtest.ShardFor(81384788765712384, 4))
	// Output: 2
}
