package monitor_test

import (
	"log"
	"net/http"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/monitor"
)

// A tool of your own (outside a launcher) can serve the bot's metrics and
// status page too, for example under /megane/ of its own server: every
// figure comes from Redis. /readyz answers 503 there, since no launcher
// runs in that process.
func ExampleServer_Handler() {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	srv := monitor.New(monitor.Options{Redis: rdb, Keys: keyspace.MustNew("mybot")})
	mux := http.NewServeMux()
	mux.Handle("/megane/", http.StripPrefix("/megane", srv.Handler()))
	if false { // not run in the example
		log.Fatal(http.ListenAndServe("127.0.0.1:8080", mux))
	}
}
