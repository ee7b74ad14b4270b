package cli

import (
	"encoding/json"
	"fmt"
	"sort"

	ucli "github.com/urfave/cli/v2"

	"github.com/megane-go/megane/store"
)

func storeCommands() []*ucli.Command {
	return []*ucli.Command{
		{Name: "buckets", Usage: "list buckets", Before: noArgs("store buckets"), Action: withEnv(func(c *ucli.Context, e *env) error {
			b, err := store.New(e.rdb, e.ks).Buckets(c.Context)
			if err != nil {
				return err
			}
			for _, name := range b {
				fmt.Fprintln(e.out, name)
			}
			return nil
		})},
		{Name: "keys", ArgsUsage: "<bucket>", Usage: "list a bucket's keys", Before: checkArgs(1, 1, "store keys <bucket>"), Action: withEnv(func(c *ucli.Context, e *env) error {
			a := c.Args().Slice()
			keys, err := store.New(e.rdb, e.ks).Bucket(a[0]).Keys(c.Context)
			if err != nil {
				return err
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintln(e.out, k)
			}
			return nil
		})},
		{Name: "get", ArgsUsage: "<bucket> <key>", Usage: "print a value (JSON)", Before: checkArgs(2, 2, "store get <bucket> <key>"), Action: withEnv(func(c *ucli.Context, e *env) error {
			a := c.Args().Slice()
			v, err := store.New(e.rdb, e.ks).Bucket(a[0]).GetRaw(c.Context, a[1])
			if err != nil {
				return err
			}
			fmt.Fprintln(e.out, string(v))
			return nil
		})},
		{Name: "set", ArgsUsage: "<bucket> <key> <json>", Usage: "set a value; the value is JSON (a bare word is taken as a string)", Before: checkArgs(3, 3, "store set <bucket> <key> <json>"), Action: withEnv(func(c *ucli.Context, e *env) error {
			a := c.Args().Slice()
			var v any = json.RawMessage(a[2])
			if !json.Valid([]byte(a[2])) {
				v = a[2]
			}
			return store.New(e.rdb, e.ks).Bucket(a[0]).Set(c.Context, a[1], v)
		})},
		{Name: "del", ArgsUsage: "<bucket> <key>", Usage: "delete a key", Before: checkArgs(2, 2, "store del <bucket> <key>"), Action: withEnv(func(c *ucli.Context, e *env) error {
			a := c.Args().Slice()
			ok, err := store.New(e.rdb, e.ks).Bucket(a[0]).Delete(c.Context, a[1])
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("%s/%s: %w", a[0], a[1], store.ErrNotFound)
			}
			return nil
		})},
		{Name: "incr", ArgsUsage: "<bucket> <key> [delta]", Usage: "atomically add delta (default 1)", Before: all(checkArgs(2, 3, "store incr <bucket> <key> [delta]"), func(c *ucli.Context) error {
			if c.NArg() < 3 {
				return nil
			}
			_, err := parseDelta(c.Args().Get(2))
			return err
		}), Action: withEnv(func(c *ucli.Context, e *env) error {
			delta := int64(1)
			if c.NArg() == 3 {
				d, err := parseDelta(c.Args().Get(2))
				if err != nil {
					return err
				}
				delta = d
			}
			n, err := store.New(e.rdb, e.ks).Bucket(c.Args().Get(0)).Incr(c.Context, c.Args().Get(1), delta)
			if err != nil {
				return err
			}
			fmt.Fprintln(e.out, n)
			return nil
		})},
	}
}
