package redisipc_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/redisipc"
)

func Example() {
	m, _ := miniredis.Run()
	defer m.Close()
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer rdb.Close()
	ks := keyspace.MustNew("example")
	ctx := context.Background()

	cluster, _ := redisipc.New(ctx, redisipc.Options{Redis: rdb, Keys: ks, Addr: "cluster:0"})
	defer cluster.Close(ctx)
	cluster.Handle("upper", func(ctx context.Context, r *redisipc.Request) ([]byte, error) {
		return []byte(strings.ToUpper(string(r.Payload))), nil
	})
	cluster.EvalEnv().Set("guilds", 42)

	cli, _ := redisipc.New(ctx, redisipc.Options{Redis: rdb, Keys: ks, Addr: "cli:docs"})
	defer cli.Close(ctx)

	out, err := cli.Call(ctx, "cluster:0", "upper", []byte("hello"))
	fmt.Println(string(out), err)

	g, err := cli.Eval(ctx, redisipc.TargetClusters, "guilds * 2")
	for _, a := range g.Answers {
		fmt.Println(a.From, string(a.Payload), a.Err)
	}
	fmt.Println("missing:", g.Missing, err)

	_, err = cli.Call(ctx, "cluster:7", "upper", nil)
	fmt.Println(err)
	// Output:
	// HELLO <nil>
	// cluster:0 84 <nil>
	// missing: [] <nil>
	// redisipc: no responders: cluster:7
}
