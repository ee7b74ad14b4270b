package control_test

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/control"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/redisipc"
)

// A program restarts cluster 2 of the bot in namespace "mybot", as
// megane-cli restart 2 does, without linking the launcher.
func ExampleRestartCluster() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	n, err := redisipc.New(ctx, redisipc.Options{Redis: rdb, Keys: keyspace.MustNew("mybot"), Addr: "cli:example"})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer n.Close(context.Background())
	cs, err := control.RestartCluster(ctx, n, 2)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("cluster", cs.ID, cs.State, "pid", cs.PID)
}
