package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"

	ucli "github.com/urfave/cli/v2"

	"github.com/megane-go/megane/cache"
	"github.com/megane-go/megane/inspect"
)

func cacheCommands() []*ucli.Command {
	getter := func(what string, get func(ctx context.Context, r *cache.Reader, id uint64) (any, error)) *ucli.Command {
		return &ucli.Command{Name: what, ArgsUsage: "<id>", Usage: "print a cached " + what, Before: all(checkArgs(1, 1, "cache "+what+" <id>"), func(c *ucli.Context) error {
			_, err := parseSnowflake(c.Args().First())
			return err
		}), Action: withEnv(func(c *ucli.Context, e *env) error {
			id, err := parseSnowflake(c.Args().First())
			if err != nil {
				return err
			}
			v, err := get(c.Context, cache.NewReader(e.rdb, e.ks), id)
			if err != nil {
				return err
			}
			return e.printJSON(v)
		})}
	}
	return []*ucli.Command{
		getter("guild", func(ctx context.Context, r *cache.Reader, id uint64) (any, error) { return r.Guild(ctx, id) }),
		getter("channel", func(ctx context.Context, r *cache.Reader, id uint64) (any, error) { return r.Channel(ctx, id) }),
		getter("user", func(ctx context.Context, r *cache.Reader, id uint64) (any, error) { return r.User(ctx, id) }),
		getter("role", func(ctx context.Context, r *cache.Reader, id uint64) (any, error) { return r.Role(ctx, id) }),
		{Name: "counts", Usage: "guild, channel and user counts: total and per shard", Before: noArgs("cache counts"), Action: withEnv(func(c *ucli.Context, e *env) error {
			r := cache.NewReader(e.rdb, e.ks)
			total, err := r.TotalCounts(c.Context)
			if err != nil {
				return err
			}
			ov, err := inspect.New(e.rdb, e.ks).Overview(c.Context)
			if err != nil {
				return err
			}
			perShard := map[int]cache.Counts{}
			for _, s := range ov.Shards {
				cnt, err := r.ShardCounts(c.Context, s.ID)
				if err != nil {
					return err
				}
				perShard[s.ID] = cnt
			}
			if e.json {
				return e.printJSON(map[string]any{"total": total, "shards": perShard})
			}
			if err := e.printJSON(total); err != nil {
				return err
			}
			ids := make([]int, 0, len(perShard))
			for id := range perShard {
				ids = append(ids, id)
			}
			sort.Ints(ids)
			for _, id := range ids {
				b, _ := json.Marshal(perShard[id])
				fmt.Fprintf(e.out, "shard %d: %s\n", id, b)
			}
			return nil
		})},
	}
}
