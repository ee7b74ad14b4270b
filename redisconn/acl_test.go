package redisconn

import (
	"context"
	"os"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/keyspace"
)

// The README shows the ACLs as redis-cli commands with these prefixes,
// followed by the rules of namespace "<ns>".
const (
	readmeBotACL      = "ACL SETUSER megane-bot reset on >BOT_PASSWORD "
	readmeReadOnlyACL = "ACL SETUSER megane-ro reset on >RO_PASSWORD "
)

// TestREADMEShowsTheACLs keeps the README's ACLs the ones BotACL and
// ReadOnlyACL return (and the end-to-end test runs under).
func TestREADMEShowsTheACLs(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	for prefix, want := range map[string]string{
		readmeBotACL:      botACL("megane:<ns>:"),
		readmeReadOnlyACL: readOnlyACL("megane:<ns>:"),
	} {
		var found []string
		for _, line := range strings.Split(string(readme), "\n") {
			if rest, ok := strings.CutPrefix(line, prefix); ok {
				found = append(found, rest)
			}
		}
		if len(found) != 1 || found[0] != want {
			t.Errorf("README: want exactly one line\n%s%s\nfound %q", prefix, want, found)
		}
	}
}

// TestACLRulesGrantWhatTheySay loads the rules into a real redis-server
// and asks it (ACL DRYRUN) what each user may do.
func TestACLRulesGrantWhatTheySay(t *testing.T) {
	srv := testredis.StartServer(t, testredis.ServerOptions{})
	ctx := context.Background()
	admin := redis.NewClient(&redis.Options{Addr: srv.Addr, Protocol: 2})
	defer admin.Close()
	ks := keyspace.MustNew("bot")
	other := keyspace.MustNew("bot2")
	for user, rules := range map[string]string{"megane-bot": BotACL(ks), "megane-ro": ReadOnlyACL(ks)} {
		args := []any{"ACL", "SETUSER", user, "reset", "on", ">pw"}
		for _, r := range strings.Fields(rules) {
			args = append(args, r)
		}
		if err := admin.Do(ctx, args...).Err(); err != nil {
			t.Fatalf("ACL SETUSER %s %s: %v", user, rules, err)
		}
	}
	tests := []struct {
		user  string
		cmd   []any
		allow bool
	}{
		{"megane-bot", []any{"HGETALL", ks.Launcher()}, true},
		{"megane-bot", []any{"HSET", ks.Cluster(0), "status", "ready"}, true},
		{"megane-bot", []any{"XADD", ks.Inbox("service:x"), "MAXLEN", "~", "10", "*", "k", "v"}, true},
		{"megane-bot", []any{"XREADGROUP", "GROUP", "workers", "c", "COUNT", "1", "STREAMS", ks.Inbox("service:x"), ">"}, true},
		{"megane-bot", []any{"EVALSHA", "0123456789012345678901234567890123456789", "1", ks.ShardSession(0)}, true},
		{"megane-bot", []any{"PUBLISH", ks.Broadcast(), "x"}, true},
		{"megane-bot", []any{"CLUSTER", "SLOTS"}, true},
		{"megane-bot", []any{"COMMAND"}, true},
		{"megane-bot", []any{"SET", ks.IdentifyBucket(0), "t", "NX", "PX", "5000"}, true},
		{"megane-bot", []any{"HGETALL", other.Launcher()}, false},
		{"megane-bot", []any{"PUBLISH", other.Broadcast(), "x"}, false},
		{"megane-bot", []any{"EVALSHA", "0123456789012345678901234567890123456789", "1", other.ShardSession(0)}, false},
		{"megane-bot", []any{"KEYS", "*"}, false},
		{"megane-bot", []any{"SCAN", "0"}, false},
		{"megane-bot", []any{"FLUSHDB"}, false},
		{"megane-bot", []any{"CONFIG", "SET", "appendonly", "no"}, false},
		{"megane-bot", []any{"XGROUP", "DESTROY", ks.Inbox("service:x"), "workers"}, false},
		{"megane-bot", []any{"SCRIPT", "FLUSH"}, false},
		{"megane-bot", []any{"CLUSTER", "RESET"}, false},
		{"megane-bot", []any{"READONLY"}, false},
		{"megane-ro", []any{"HGETALL", ks.Launcher()}, true},
		{"megane-ro", []any{"XREVRANGE", ks.Events(), "+", "-", "COUNT", "10"}, true},
		{"megane-ro", []any{"XINFO", "GROUPS", ks.Inbox("service:x")}, true},
		{"megane-ro", []any{"ZRANGE", ks.Nodes(), "0", "-1", "WITHSCORES"}, true},
		{"megane-ro", []any{"SUBSCRIBE", ks.Broadcast()}, true},
		{"megane-ro", []any{"CLUSTER", "SLOTS"}, true},
		{"megane-ro", []any{"COMMAND"}, true},
		{"megane-ro", []any{"CLUSTER", "RESET"}, false},
		{"megane-ro", []any{"HSET", ks.Launcher(), "status", "x"}, false},
		{"megane-ro", []any{"XADD", ks.Inbox("launcher"), "*", "k", "v"}, false},
		{"megane-ro", []any{"PUBLISH", ks.Broadcast(), "x"}, false},
		{"megane-ro", []any{"EVAL", "return 1", "0"}, false},
		{"megane-ro", []any{"HGETALL", other.Launcher()}, false},
		{"megane-ro", []any{"SCAN", "0"}, false},
		{"megane-ro", []any{"RANDOMKEY"}, false},
		{"megane-ro", []any{"KEYS", "*"}, false},
	}
	for _, tt := range tests {
		// DRYRUN answers OK, or a text saying why the command is refused.
		reply, err := admin.Do(ctx, append([]any{"ACL", "DRYRUN", tt.user}, tt.cmd...)...).Text()
		if err != nil {
			t.Fatalf("ACL DRYRUN %s %v: %v", tt.user, tt.cmd, err)
		}
		if allowed := reply == "OK"; allowed != tt.allow {
			t.Errorf("%s %v: allowed %v (%s), want %v", tt.user, tt.cmd, allowed, reply, tt.allow)
		}
	}
}
