package launcher

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/disgoorg/snowflake/v2"

	"github.com/megane-go/megane/cli"
	"github.com/megane-go/megane/internal/testproc"
	"github.com/megane-go/megane/lifecycle"
	"github.com/megane-go/megane/redisipc"
)

// The test bot in two more builds: a new version, and one that crashes at
// start.
var (
	testbotV2    = &testproc.Binary{Pkg: "./internal/testbot", LDFlags: "-X main.version=v2"}
	testbotCrash = &testproc.Binary{Pkg: "./internal/testbot", LDFlags: "-X main.version=v3 -X main.crash=1"}
)

// install puts the program src at dst the way a deploy does: written
// beside it, then renamed over it (the running processes keep their
// image).
func install(t *testing.T, src, dst string) {
	t.Helper()
	b, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	tmp := dst + ".new"
	if err := os.WriteFile(tmp, b, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

// versions asks every cluster which build it runs.
func (f *fleet) versions(clusters int) []string {
	f.t.Helper()
	out := make([]string, clusters)
	for c := range clusters {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := f.node.CallJSON(ctx, redisipc.ClusterAddr(c), "testbot:version", nil, &out[c])
		cancel()
		if err != nil {
			out[c] = "error: " + err.Error()
		}
	}
	return out
}

// cliErr runs megane-cli and returns its output and error.
func (f *fleet) cliErr(args ...string) (string, error) {
	var out bytes.Buffer
	app := cli.App(&out)
	app.ErrWriter = &out
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	argv := append([]string{"megane-cli", "--redis", f.redisURL(), "--namespace", f.ks.Namespace()}, args...)
	err := app.RunContext(ctx, argv)
	return out.String(), err
}

// traffic sends a message to each guild in turn every interval until
// stopped, and returns the ids sent.
func (f *fleet) traffic(every time.Duration) (stop func() []snowflake.ID) {
	guilds := f.srv.World().Guilds
	var (
		mu   sync.Mutex
		ids  []snowflake.ID
		done = make(chan struct{})
		wg   sync.WaitGroup
	)
	wg.Go(func() {
		t := time.NewTicker(every)
		defer t.Stop()
		for i := 0; ; i++ {
			select {
			case <-done:
				return
			case <-t.C:
			}
			sent := f.say(guilds[i%len(guilds) : i%len(guilds)+1])
			mu.Lock()
			ids = append(ids, sent...)
			mu.Unlock()
		}
	})
	return func() []snowflake.ID {
		close(done)
		wg.Wait()
		return ids
	}
}

// TestRollingDeploy replaces the bot's program on disk and rolls it out
// with megane-cli while messages flow: every cluster ends on the new
// build, every shard resumed (no identify), never two clusters down, every
// message handled exactly once. Then a build that crashes at start stops
// the roll at its first cluster, which goes back to the build it ran, and
// the fleet keeps serving.
func TestRollingDeploy(t *testing.T) {
	f := newFleet(t, fleetOptions{shards: 8, clusters: 4, maxConcurrency: 8})
	bot := filepath.Join(t.TempDir(), "bot")
	install(t, f.bin, bot)
	f.bin = bot
	f.start()
	f.waitAllReady(60 * time.Second)
	if v := f.versions(4); strings.Join(v, ",") != "v1,v1,v1,v1" {
		t.Fatalf("versions before the deploy: %v", v)
	}

	install(t, testbotV2.Path(t), bot)
	identBefore, resBefore := f.shardActivity()
	from := len(f.events())
	stop := f.traffic(20 * time.Millisecond)
	out, err := f.cliErr("rolling-restart")
	ids := stop()
	if err != nil {
		t.Fatalf("megane-cli rolling-restart: %v\n%s", err, out)
	}
	for _, want := range []string{"step 1: cluster 0:", "step 4: cluster 3:", "rolled 4 steps", "8 shards resumed, 0 identified"} {
		if !strings.Contains(out, want) {
			t.Errorf("megane-cli rolling-restart does not print %q:\n%s", want, out)
		}
	}
	if v := f.versions(4); strings.Join(v, ",") != "v2,v2,v2,v2" {
		t.Fatalf("versions after the deploy: %v", v)
	}
	identAfter, resAfter := f.shardActivity()
	for s := range 8 {
		if identAfter[s] != identBefore[s] || resAfter[s] != resBefore[s]+1 {
			t.Errorf("shard %d: %d identifies and %d resumes during the roll, want 0 and 1",
				s, identAfter[s]-identBefore[s], resAfter[s]-resBefore[s])
		}
	}
	oneDownAtATime(t, f.events()[from:])
	f.waitSeen(ids, 30*time.Second)
	seen := f.seen()
	dups := 0
	for _, id := range ids {
		if seen[id] != 1 {
			dups++
		}
	}
	if dups != 0 {
		t.Errorf("%d of %d messages were handled more than once during the roll", dups, len(ids))
	}
	t.Logf("rolling deploy of 4 clusters × 2 shards: %d messages during the roll, 0 lost, %d duplicated; CLI output:\n%s", len(ids), dups, out)

	// A build that cannot start stops the roll; the fleet keeps serving.
	install(t, testbotCrash.Path(t), bot)
	out, err = f.cliErr("rolling-restart")
	if err == nil || !strings.Contains(out, "FAILED") {
		t.Fatalf("a roll of a crashing build: err %v, output:\n%s", err, out)
	}
	st := f.waitAllReady(60 * time.Second)
	if v := f.versions(4); strings.Join(v, ",") != "v2,v2,v2,v2" {
		t.Fatalf("versions after the failed deploy: %v (want every cluster back on or still on v2)", v)
	}
	for _, c := range st.Clusters[1:] {
		if c.Restarts != 1 {
			t.Errorf("cluster %d restarted %d times; the failed roll should have stopped at cluster 0", c.ID, c.Restarts)
		}
	}
	if evs := f.events(); countEvents(evs, lifecycle.RollStep, -1) != 5 {
		t.Errorf("%d roll_step events, want 5 (4 + the failed one)", countEvents(evs, lifecycle.RollStep, -1))
	}
	ids = f.say(f.srv.World().Guilds)
	f.waitSeen(ids, 30*time.Second)
	t.Logf("failed deploy: %s", strconv.Quote(lastLine(out)))
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
