// Package testenv is the start the test bots share: the child programs that
// integration tests build without -race and run as processes
// (cluster/internal/testcluster, e2e/internal/e2ebot,
// discordtest/internal/probebot, services/internal/ipcnode). It reads their
// configuration from the environment, opens their Redis and keyspace, stops
// them on SIGTERM or SIGINT, and writes the JSON lines on stdout that the
// tests read.
package testenv

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/redisconn"
	"github.com/megane-go/megane/shardmap"
)

var outMu sync.Mutex

// Emit writes v as one JSON line on stdout. Any goroutine may call it; lines
// never interleave.
func Emit(v map[string]any) {
	b, _ := json.Marshal(v)
	outMu.Lock()
	defer outMu.Unlock()
	_, _ = os.Stdout.Write(append(b, '\n'))
}

// Fail emits {"ev":"error","err":…} and exits with status 1.
func Fail(err error) {
	Emit(map[string]any{"ev": "error", "err": err.Error()})
	os.Exit(1)
}

// SignalContext is a context that ends on SIGTERM or SIGINT: the way tests
// stop a bot (gracefully, saving its sessions).
func SignalContext() (context.Context, context.CancelFunc) {
	return signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
}

// Logger logs text to stderr, at debug level when debug is set and warn
// otherwise, so a test's output stays quiet unless asked.
func Logger(debug bool) *slog.Logger {
	level := slog.LevelWarn
	if debug {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: level}))
}

// Connect opens the Redis at url and builds the keyspace of namespace.
func Connect(ctx context.Context, url, namespace string) (redis.UniversalClient, keyspace.Keyspace, error) {
	ks, err := keyspace.New(namespace)
	if err != nil {
		return nil, keyspace.Keyspace{}, err
	}
	rdb, err := redisconn.Open(ctx, url)
	if err != nil {
		return nil, keyspace.Keyspace{}, err
	}
	return rdb, ks, nil
}

// Shards reads a shard list ("0,1,2" or "0-2"); empty is no list (nil).
func Shards(v string) ([]int, error) {
	if v == "" {
		return nil, nil
	}
	return shardmap.ParseRanges(v)
}

// Env reads the variables of one test bot, all named with one prefix:
// Env("TC_").Int("CLUSTER_ID") reads TC_CLUSTER_ID.
type Env string

// String is the variable's value, "" when unset.
func (e Env) String(name string) string { return os.Getenv(string(e) + name) }

// Int is the variable as a number; 0 when unset or not a number.
func (e Env) Int(name string) int {
	n, _ := strconv.Atoi(e.String(name))
	return n
}

// Millis is the variable as a number of milliseconds.
func (e Env) Millis(name string) time.Duration {
	return time.Duration(e.Int(name)) * time.Millisecond
}

// Shards is the variable as a shard list (see Shards).
func (e Env) Shards(name string) ([]int, error) {
	s, err := Shards(e.String(name))
	if err != nil {
		return nil, fmt.Errorf("%s%s: %w", string(e), name, err)
	}
	return s, nil
}

// Logger is Logger, at debug level when the variable DEBUG is set.
func (e Env) Logger() *slog.Logger { return Logger(e.String("DEBUG") != "") }

// Connect is Connect with the variables REDIS_URL and NAMESPACE.
func (e Env) Connect(ctx context.Context) (redis.UniversalClient, keyspace.Keyspace, error) {
	return Connect(ctx, e.String("REDIS_URL"), e.String("NAMESPACE"))
}
