package e2e

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/redisconn"
)

// TestACLEndToEndOnCluster runs the whole bot (launcher, two clusters, the
// service echo) and megane-cli on a Redis Cluster of three masters of the
// test's own, as the README's users: every process of the bot as
// megane-bot and the inspecting commands as megane-ro, through
// redis+cluster:// URLs. Redis refuses nothing they send (ACL LOG of every
// node), no node ever answers CROSSSLOT, and the bot's keys spread over
// every master.
func TestACLEndToEndOnCluster(t *testing.T) {
	ks := keyspace.MustNew(testredis.Namespace(t))
	botPass, roPass, adminPass := secret(t), secret(t), secret(t)
	acl := strings.Join([]string{
		"user default off",
		"user admin on >" + adminPass + " ~* &* +@all",
		"user megane-bot on >" + botPass + " " + redisconn.BotACL(ks),
		"user megane-ro on >" + roPass + " " + redisconn.ReadOnlyACL(ks),
	}, "\n") + "\n"
	file := filepath.Join(t.TempDir(), "users.acl")
	if err := os.WriteFile(file, []byte(acl), 0o600); err != nil {
		t.Fatal(err)
	}
	rc := testredis.StartCluster(t, testredis.ClusterOptions{ACLFile: file, Username: "admin", Password: adminPass})
	url := func(user, pass string) string {
		return "redis+cluster://" + user + ":" + pass + "@" + strings.TrimPrefix(rc.URL(), "redis+cluster://")
	}
	botURL, roURL, adminURL := url("megane-bot", botPass), url("megane-ro", roPass), url("admin", adminPass)
	ctx := context.Background()

	start := time.Now()
	b := startSecureBot(t, botURL, ks)
	b.waitReady(roURL, 60*time.Second)
	t.Logf("ready on the Redis Cluster in %s", time.Since(start).Round(time.Millisecond))

	t.Run("ReadOnlyInspects", func(t *testing.T) {
		guild := b.srv.World().Guilds[0].ID.String()
		for _, args := range [][]string{
			{"status"}, {"nodes"}, {"stats"}, {"events"}, {"deadletter"},
			{"store", "buckets"}, {"store", "keys", "prefs"}, {"cache", "guild", guild}, {"cache", "counts"},
		} {
			if out, err := b.cli(roURL, args...); err != nil {
				t.Errorf("megane-cli %s as the read-only user: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
		out, err := b.cli(roURL, "cache", "guild", guild)
		if err != nil || !strings.Contains(out, b.srv.World().Guilds[0].Name) {
			t.Errorf("megane-cli cache guild %s = %q, %v; want the guild's name", guild, out, err)
		}
	})

	t.Run("NamespacesScanEveryMaster", func(t *testing.T) {
		// megane-cli namespaces SCANs, which the README's users may not;
		// an administrator runs it, on every master.
		out, err := runCLI(adminURL, ks.Namespace(), "namespaces")
		if err != nil || !strings.Contains(out, ks.Namespace()) {
			t.Errorf("megane-cli namespaces = %q, %v; want %s", out, err, ks.Namespace())
		}
	})

	t.Run("KeysSpreadOverEveryMaster", func(t *testing.T) {
		for _, addr := range rc.Addrs() {
			n := countKeys(ctx, t, rc.NodeClient(addr), ks.Base()+"*")
			if n == 0 {
				t.Errorf("master %s holds none of the bot's keys", addr)
			}
			t.Logf("master %s: %d keys", addr, n)
		}
	})

	b.exercise(botURL)

	var refused []string
	for _, addr := range rc.Addrs() {
		node := rc.NodeClient(addr)
		for _, e := range aclLogOf(t, node) {
			refused = append(refused, addr+": "+e)
		}
		_ = node.Close()
	}
	if len(refused) > 0 {
		t.Errorf("Redis refused these to the bot or the CLI under the README's ACLs (newest first):\n  %s",
			strings.Join(refused, "\n  "))
	}
	if n, err := rc.CrossSlotErrors(ctx); err != nil || n != 0 {
		t.Errorf("the cluster answered CROSSSLOT %d times (%v)", n, err)
	}
}

// countKeys counts the keys matching pattern on one node (SCAN), and closes
// the client.
func countKeys(ctx context.Context, t *testing.T, node *redis.Client, pattern string) int {
	t.Helper()
	defer node.Close()
	n := 0
	iter := node.Scan(ctx, 0, pattern, 1000).Iterator()
	for iter.Next(ctx) {
		n++
	}
	if err := iter.Err(); err != nil {
		t.Fatalf("SCAN %s: %v", pattern, err)
	}
	return n
}

// aclLogOf returns a node's ACL LOG entries, one line each.
func aclLogOf(t *testing.T, node *redis.Client) []string {
	t.Helper()
	entries, err := node.Do(context.Background(), "ACL", "LOG").Slice()
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, e := range entries {
		kv, _ := e.([]any)
		fields := map[string]any{}
		for i := 0; i+1 < len(kv); i += 2 {
			fields[fmt.Sprint(kv[i])] = kv[i+1]
		}
		out = append(out, fmt.Sprintf("user %v: %v %v refused (%v, count %v)",
			fields["username"], fields["reason"], fields["object"], fields["context"], fields["count"]))
	}
	return out
}
