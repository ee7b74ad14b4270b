package cluster_test

import (
	"context"
	"errors"
	"os"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/discordtest"
	"github.com/megane-go/megane/internal/testproc"
	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/keyspace"
)

// The integration tests run real disgo clients, which race, so they live in
// child processes built without -race (cluster/internal/testcluster).
var testcluster = &testproc.Binary{Pkg: "./internal/testcluster"}

func TestMain(m *testing.M) {
	os.Exit(testproc.Run(m, testcluster))
}

// procEvent is one JSON line of a testcluster process.
type procEvent struct {
	Ev      string `json:"ev"`
	Shard   int    `json:"shard"`
	Seq     int    `json:"seq"`
	Content string `json:"content"`
	Err     string `json:"err"`
	Len     int    `json:"len"`
}

type proc struct {
	*testproc.Proc
	t    *testing.T
	name string
}

type procConfig struct {
	ns          string
	clusterID   int
	shards      string
	shardCount  int
	maxConc     int
	limiter     string
	windowMS    int
	syncMS      int
	redisURL    string
	srv         *discordtest.Server
	extraEnvVar []string
}

func startProc(t *testing.T, name string, c procConfig) *proc {
	t.Helper()
	env := []string{
		"TC_REDIS_URL=" + c.redisURL,
		"TC_NAMESPACE=" + c.ns,
		"TC_CLUSTER_ID=" + strconv.Itoa(c.clusterID),
		"TC_SHARDS=" + c.shards,
		"TC_SHARD_COUNT=" + strconv.Itoa(c.shardCount),
		"TC_MAX_CONCURRENCY=" + strconv.Itoa(c.maxConc),
		"TC_TOKEN=" + c.srv.Token(),
		"TC_REST_URL=" + c.srv.RESTURL(),
		"TC_LIMITER=" + c.limiter,
		"TC_IDENTIFY_WINDOW_MS=" + strconv.Itoa(c.windowMS),
		"TC_SYNC_MS=" + strconv.Itoa(c.syncMS),
	}
	p := testproc.Start(t, testproc.Spec{
		Name: name,
		Path: testcluster.Path(t),
		Env:  append(env, c.extraEnvVar...),
	})
	return &proc{Proc: p, t: t, name: name}
}

func (p *proc) count(ev string) int {
	return len(p.all(ev))
}

func (p *proc) all(ev string) []procEvent {
	var out []procEvent
	for _, e := range testproc.Events[procEvent](p.Proc) {
		if e.Ev == ev {
			out = append(out, e)
		}
	}
	return out
}

func (p *proc) errors() []string {
	var out []string
	for _, e := range p.all("error") {
		out = append(out, e.Err)
	}
	return out
}

// waitFor waits until cond holds or d passes; it fails the test early
// when the process died.
func (p *proc) waitFor(what string, d time.Duration, cond func() bool) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	switch err := p.WaitFor(ctx, cond); {
	case errors.Is(err, testproc.ErrExited):
		p.t.Fatalf("%s exited (%v) while waiting for %s; errors: %v", p.name, p.Err(), what, p.errors())
	case err != nil:
		p.t.Fatalf("%s: timed out after %s waiting for %s; errors: %v", p.name, d, what, p.errors())
	}
}

func (p *proc) waitReady(d time.Duration) {
	p.t.Helper()
	p.waitFor("ready", d, func() bool { return p.count("ready") > 0 })
}

// stop sends sig and waits for the exit.
func (p *proc) stop(sig syscall.Signal, d time.Duration) error {
	p.t.Helper()
	return p.Stop(sig, d)
}

// newFake starts a fake Discord for the test.
func newFake(t *testing.T, o discordtest.Options) *discordtest.Server {
	t.Helper()
	srv, err := discordtest.NewServer(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	return srv
}

// replies counts the "seen <content>" messages the clusters posted, by content.
func replies(srv *discordtest.Server) map[string]int {
	out := map[string]int{}
	for _, m := range srv.Messages() {
		if c, ok := strings.CutPrefix(m.Content, "seen "); ok {
			out[c]++
		}
	}
	return out
}

// realRedis returns a client of the integration Redis, its URL and a fresh
// keyspace.
func realRedis(t *testing.T) (redis.UniversalClient, string, keyspace.Keyspace) {
	t.Helper()
	url := testredis.URL(t)
	rdb, ks := testredis.Real(t)
	return rdb, url, ks
}
