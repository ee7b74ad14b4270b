package services_test

import (
	"context"
	"fmt"
	"strings"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/redisipc"
	"github.com/megane-go/megane/services"
)

// shout is a service: central work that any cluster can ask for.
type shout struct{}

func (shout) Launch(ctx context.Context, s *services.Service) error { return nil }

func (shout) HandleCommand(ctx context.Context, s *services.Service, cmd services.Command) (any, error) {
	switch cmd.Op {
	case "upper":
		var in string
		if err := cmd.Decode(&in); err != nil {
			return nil, err
		}
		return strings.ToUpper(in), nil
	default:
		return nil, fmt.Errorf("%w: %s", redisipc.ErrUnknownOp, cmd.Op)
	}
}

func Example() {
	m, _ := miniredis.Run()
	defer m.Close()
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer rdb.Close()
	ks := keyspace.MustNew("example")

	// The launcher runs this in the service's own process.
	ctx, stop := context.WithCancel(context.Background())
	ready, done := make(chan struct{}), make(chan error)
	go func() {
		done <- services.Run(ctx, services.Options{Name: "shout", Redis: rdb, Keys: ks, OnReady: func() { close(ready) }}, shout{})
	}()
	<-ready

	// Any other process: a cluster's c.IPC, or a node of its own.
	node, _ := redisipc.New(context.Background(), redisipc.Options{Redis: rdb, Keys: ks, Addr: "cluster:0"})
	defer node.Close(context.Background())
	var out string
	err := services.Call(context.Background(), node, "shout", "upper", "hello", &out)
	fmt.Println(out, err)
	err = services.Call(context.Background(), node, "shout", "whisper", "hello", &out)
	fmt.Println(err != nil)

	stop()
	fmt.Println(<-done)
	// Output:
	// HELLO <nil>
	// true
	// <nil>
}
