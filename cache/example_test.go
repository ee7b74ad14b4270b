package cache_test

import (
	"context"
	"fmt"
	"log/slog"
	"os"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/cache"
	"github.com/megane-go/megane/keyspace"
)

// A cluster feeds its raw dispatches to a Projector; any process reads them
// back with a Reader.
func Example() {
	m, _ := miniredis.Run()
	defer m.Close()
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer rdb.Close()
	ctx := context.Background()
	keys := keyspace.MustNew("example")

	p, err := cache.NewProjector(cache.Config{
		Redis:  rdb,
		Keys:   keys,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn})),
	})
	if err != nil {
		panic(err)
	}
	// In a cluster this is the raw-event listener: (shard, "t", "d" bytes).
	p.Enqueue(0, "GUILD_CREATE", []byte(`{"id":"661720242585600000","name":"Fake Guild","owner_id":"42",
		"features":["COMMUNITY"],"channels":[{"id":"661720242585600001","type":0,"name":"general","position":0}],
		"roles":[],"members":[]}`))
	p.Enqueue(0, "GUILD_UPDATE", []byte(`{"id":"661720242585600000","name":"Renamed"}`))
	if err := p.Flush(ctx); err != nil {
		panic(err)
	}
	defer p.Close(ctx)

	r := cache.NewReader(rdb, keys)
	g, _ := r.Guild(ctx, 661720242585600000)
	chans, _ := r.GuildChannels(ctx, g.ID)
	c, _ := r.Channel(ctx, chans[0])
	counts, _ := r.ShardCounts(ctx, 0)
	fmt.Println(g.Name, g.Features, c.Name, counts.Guilds, counts.Channels)
	// Output: Renamed [COMMUNITY] general 1 1
}
