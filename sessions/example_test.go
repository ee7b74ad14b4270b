package sessions_test

import (
	"context"
	"fmt"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/sessions"
)

func Example() {
	m := miniredis.NewMiniRedis()
	if err := m.Start(); err != nil {
		panic(err)
	}
	defer m.Close()
	rdb := redis.NewClient(&redis.Options{Addr: m.Addr()})
	defer rdb.Close()
	ks := keyspace.MustNew("mybot")
	ctx := context.Background()

	_ = sessions.Save(ctx, rdb, ks, 3, sessions.State{SessionID: "abc", Sequence: 120, ResumeURL: "wss://resume.example"})
	// A late writer with an older sequence of the same session is ignored.
	_ = sessions.Save(ctx, rdb, ks, 3, sessions.State{SessionID: "abc", Sequence: 90, ResumeURL: "wss://resume.example"})

	states, _ := sessions.Load(ctx, rdb, ks, []int{2, 3})
	_, has2 := states[2]
	fmt.Println(states[3].SessionID, states[3].Sequence, has2)
	// Output: abc 120 false
}
