package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/cli"
	"github.com/megane-go/megane/discordtest"
	"github.com/megane-go/megane/inspect"
	"github.com/megane-go/megane/internal/testcerts"
	"github.com/megane-go/megane/internal/testproc"
	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/internal/testwait"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/launcherhash"
	"github.com/megane-go/megane/redisconn"
)

const (
	secShards   = 4
	secClusters = 2
)

// securebot is one bot run by launcher.Run (the launcher's test bot: two
// real cluster processes and the service "echo") against a fake Discord in
// this process and a redis-server of the test's own.
type securebot struct {
	t        *testing.T
	srv      *discordtest.Server
	launcher *testproc.Proc
	ks       keyspace.Keyspace
}

// startSecureBot runs the launcher with REDIS_URL=botURL in namespace ks.
func startSecureBot(t *testing.T, botURL string, ks keyspace.Keyspace) *securebot {
	t.Helper()
	srv, err := discordtest.NewServer(discordtest.Options{
		Shards: secShards, MaxConcurrency: secShards, HeartbeatInterval: time.Second,
		World: discordtest.WorldOptions{Seed: 11, Guilds: 8},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	p := testproc.Start(t, testproc.Spec{
		Name: "launcher", Path: launcherbot.Path(t), Setpgid: true,
		Env: []string{
			"DISCORD_TOKEN=" + srv.Token(),
			"MEGANE_DISCORD_REST_URL=" + srv.RESTURL(),
			"MEGANE_DISCORD_GATEWAY_URL=" + srv.GatewayURL(),
			"REDIS_URL=" + botURL,
			"MEGANE_NAMESPACE=" + ks.Namespace(),
			"MEGANE_SHARDS=" + strconv.Itoa(secShards),
			"MEGANE_CLUSTERS=" + strconv.Itoa(secClusters),
			"MEGANE_HEARTBEAT_INTERVAL=500ms",
			"MEGANE_STATS_INTERVAL=1s",
			"MEGANE_RESTART_BACKOFF=100ms",
			"MEGANE_SHUTDOWN_TIMEOUT=10s",
			"MEGANE_READY_TIMEOUT=30s",
			"TESTBOT_SERVICE=1",
		},
	})
	return &securebot{t: t, srv: srv, launcher: p, ks: ks}
}

// runCLI runs megane-cli in this process (it runs no gateway) against url
// in namespace ns.
func runCLI(url, ns string, args ...string) (string, error) {
	var out bytes.Buffer
	full := append([]string{"megane-cli", "--redis", url, "--namespace", ns, "--timeout", "5s"}, args...)
	err := cli.App(&out).RunContext(context.Background(), full)
	return out.String(), err
}

// cli runs megane-cli against url in the bot's namespace.
func (b *securebot) cli(url string, args ...string) (string, error) {
	return runCLI(url, b.ks.Namespace(), args...)
}

// status is megane-cli --json status as the user of url.
func (b *securebot) status(url string) (*inspect.Overview, error) {
	out, err := b.cli(url, "--json", "status")
	if err != nil {
		return nil, err
	}
	var ov inspect.Overview
	if err := json.Unmarshal([]byte(out), &ov); err != nil {
		return nil, fmt.Errorf("%w in %s", err, out)
	}
	return &ov, nil
}

// notReady lists what megane-cli status (as the user of url) shows as not
// ready yet.
func (b *securebot) notReady(url string) []string {
	ov, err := b.status(url)
	if err != nil {
		return []string{"status: " + err.Error()}
	}
	var problems []string
	if ov.Launcher == nil || ov.Launcher.Status != launcherhash.StatusRunning {
		problems = append(problems, fmt.Sprintf("launcher %+v", ov.Launcher))
	}
	if len(ov.Clusters) != secClusters || len(ov.Shards) != secShards {
		problems = append(problems, fmt.Sprintf("%d clusters, %d shards", len(ov.Clusters), len(ov.Shards)))
	}
	for _, c := range ov.Clusters {
		if !c.Alive || c.Status != "ready" {
			problems = append(problems, fmt.Sprintf("cluster %d: %s, alive %v", c.ID, c.Status, c.Alive))
		}
	}
	for _, s := range ov.Shards {
		if s.Status != "ready" {
			problems = append(problems, fmt.Sprintf("shard %d: %s", s.ID, s.Status))
		}
	}
	return problems
}

// waitReady waits until status (as the user of url) shows every cluster
// and shard ready, failing early when the launcher exited.
func (b *securebot) waitReady(url string, d time.Duration) {
	b.t.Helper()
	testwait.Problems(b.t, d, "the bot ready", func() []string {
		problems := b.notReady(url)
		if len(problems) > 0 {
			select {
			case <-b.launcher.Exited():
				b.t.Fatalf("the launcher exited (%v) before the bot was ready: %v", b.launcher.Err(), problems)
			default:
			}
		}
		return problems
	})
}

// exercise runs what a bot does beyond starting, as the user of botURL:
// gateway events reach the handler, the CLI's IPC reaches clusters and the
// service, the store is written and read, a cluster restarts and resumes,
// and the launcher stops gracefully.
func (b *securebot) exercise(botURL string) {
	t := b.t
	t.Helper()
	ctx := context.Background()

	var sent int
	for _, g := range b.srv.World().Guilds {
		for _, ch := range g.Channels {
			if ch.Type == 0 {
				if _, err := b.srv.SendUserMessage(ch.ID, 0, "hello"); err != nil {
					t.Fatal(err)
				}
				sent++
				break
			}
		}
	}
	answered := func(*discordtest.Server) bool {
		n := 0
		for _, m := range b.srv.Messages() {
			if strings.HasPrefix(m.Content, "seen:") {
				n++
			}
		}
		return n >= sent
	}
	wctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := b.srv.WaitFor(wctx, answered); err != nil {
		t.Fatalf("the bot did not answer the %d messages: %v", sent, err)
	}

	out, err := b.cli(botURL, "--json", "eval", "--target", "clusters", "len(shards)")
	if err != nil || strings.Count(out, `"result": 2`) != secClusters {
		t.Errorf("eval on every cluster = %s, %v", out, err)
	}
	testwait.Problems(t, 15*time.Second, "the service echo answering a ping", func() []string {
		if out, err := b.cli(botURL, "ping", "service:echo"); err != nil || !strings.Contains(out, "answered") {
			return []string{fmt.Sprintf("ping service:echo = %q, %v", out, err)}
		}
		return nil
	})
	if _, err := b.cli(botURL, "store", "set", "prefs", "guild:1", `{"prefix":"!"}`); err != nil {
		t.Errorf("store set: %v", err)
	}
	if out, err := b.cli(botURL, "store", "get", "prefs", "guild:1"); err != nil || strings.TrimSpace(out) != `{"prefix":"!"}` {
		t.Errorf("store get = %q, %v", out, err)
	}

	resumesBefore := b.okResumes()
	if _, err := b.cli(botURL, "restart", "1"); err != nil {
		t.Fatalf("restart 1: %v", err)
	}
	b.waitReady(botURL, 30*time.Second)
	if got := b.okResumes() - resumesBefore; got != secShards/secClusters {
		t.Errorf("the restarted cluster resumed %d shards, want %d", got, secShards/secClusters)
	}

	if err := b.launcher.Stop(syscall.SIGTERM, 20*time.Second); err != nil {
		t.Errorf("the launcher's graceful stop: %v", err)
	}
}

func (b *securebot) okResumes() int {
	n := 0
	for _, r := range b.srv.Resumes() {
		if r.OK {
			n++
		}
	}
	return n
}

// logHolds reports whether the launcher's log (its own lines and its
// children's) contains s.
func (b *securebot) logHolds(s string) bool {
	log, err := os.ReadFile(b.launcher.LogPath())
	if err != nil {
		b.t.Fatal(err)
	}
	return bytes.Contains(log, []byte(s))
}

// TestTLSEndToEnd runs the bot (launcher, two clusters, a service) and
// megane-cli over rediss:// against a redis-server that requires TLS with
// client certificates, trusting a CA made by the test.
func TestTLSEndToEnd(t *testing.T) {
	certs := testcerts.Write(t)
	rs := testredis.StartServer(t, testredis.ServerOptions{TLS: &certs, TLSAuthClients: true})
	tlsURL := "rediss://" + rs.Addr + "/0?tls_ca_file=" + url.QueryEscape(certs.CA) +
		"&tls_cert_file=" + url.QueryEscape(certs.ClientCert) + "&tls_key_file=" + url.QueryEscape(certs.ClientKey)
	ks := keyspace.MustNew(testredis.Namespace(t))

	start := time.Now()
	b := startSecureBot(t, tlsURL, ks)
	b.waitReady(tlsURL, 60*time.Second)
	t.Logf("ready over TLS in %s", time.Since(start).Round(time.Millisecond))
	b.exercise(tlsURL)

	// Nothing reached the server in the clear, and a client without the
	// client certificate is refused.
	if _, err := b.cli("redis://"+rs.Addr+"?max_retries=0&read_timeout=300ms", "status"); err == nil {
		t.Error("megane-cli over plain redis:// to the TLS port succeeded")
	}
	if _, err := b.cli("rediss://"+rs.Addr+"?max_retries=0&tls_ca_file="+url.QueryEscape(certs.CA), "status"); err == nil {
		t.Error("megane-cli without a client certificate succeeded")
	}
}

// aclServer is a redis-server whose users come from an ACL file built
// from the rules of redisconn.BotACL and redisconn.ReadOnlyACL (the rules
// the README shows, checked by a redisconn test).
type aclServer struct {
	addr                    string
	botPass, roPass         string
	admin                   *redis.Client
	botURL, roURL, adminURL string
}

func secret(t *testing.T) string {
	var b [12]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return "pw" + hex.EncodeToString(b[:])
}

func startACLServer(t *testing.T, ks keyspace.Keyspace) *aclServer {
	t.Helper()
	s := &aclServer{botPass: secret(t), roPass: secret(t)}
	adminPass := secret(t)
	acl := strings.Join([]string{
		"user default off",
		"user admin on >" + adminPass + " ~* &* +@all",
		"user megane-bot on >" + s.botPass + " " + redisconn.BotACL(ks),
		"user megane-ro on >" + s.roPass + " " + redisconn.ReadOnlyACL(ks),
	}, "\n") + "\n"
	file := filepath.Join(t.TempDir(), "users.acl")
	if err := os.WriteFile(file, []byte(acl), 0o600); err != nil {
		t.Fatal(err)
	}
	rs := testredis.StartServer(t, testredis.ServerOptions{ACLFile: file})
	s.addr = rs.Addr
	s.botURL = "redis://megane-bot:" + s.botPass + "@" + rs.Addr + "/0"
	s.roURL = "redis://megane-ro:" + s.roPass + "@" + rs.Addr + "/0"
	s.adminURL = "redis://admin:" + adminPass + "@" + rs.Addr + "/0"
	s.admin = redis.NewClient(&redis.Options{Addr: rs.Addr, Username: "admin", Password: adminPass, Protocol: 2})
	t.Cleanup(func() { _ = s.admin.Close() })
	return s
}

// aclLog returns the server's ACL LOG entries (refused commands, keys and
// channels), newest first, one line each.
func (s *aclServer) aclLog(t *testing.T) []string {
	t.Helper()
	return aclLogOf(t, s.admin)
}

// client connects as user with password.
func (s *aclServer) client(t *testing.T, user, pass string) *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: s.addr, Username: user, Password: pass, MaxRetries: -1})
	t.Cleanup(func() { _ = c.Close() })
	return c
}

func isNoPerm(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "NOPERM") }

// TestACLEndToEnd runs the bot as a Redis user with exactly the README's
// bot ACL and megane-cli status as a user with the README's read-only ACL:
// both work, Redis refuses nothing they do, the read-only user cannot write,
// neither can touch another namespace, and no password shows in a log or an
// error.
func TestACLEndToEnd(t *testing.T) {
	ks := keyspace.MustNew(testredis.Namespace(t))
	other := keyspace.MustNew("other-" + ks.Namespace())
	s := startACLServer(t, ks)
	ctx := context.Background()
	if err := s.admin.HSet(ctx, other.Launcher(), "status", "running").Err(); err != nil {
		t.Fatal(err)
	}

	start := time.Now()
	b := startSecureBot(t, s.botURL, ks)
	b.waitReady(s.roURL, 60*time.Second)
	t.Logf("ready under the bot ACL in %s", time.Since(start).Round(time.Millisecond))

	t.Run("ReadOnlyInspects", func(t *testing.T) {
		guild := b.srv.World().Guilds[0].ID.String()
		for _, args := range [][]string{
			{"status"}, {"nodes"}, {"stats"}, {"events"}, {"deadletter"},
			{"store", "buckets"}, {"store", "keys", "prefs"}, {"cache", "guild", guild}, {"cache", "counts"},
		} {
			if out, err := b.cli(s.roURL, args...); err != nil {
				t.Errorf("megane-cli %s as the read-only user: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
	})

	b.exercise(s.botURL)

	if entries := s.aclLog(t); len(entries) > 0 {
		t.Fatalf("Redis refused these to the bot or the CLI under the README's ACLs (newest first):\n  %s",
			strings.Join(entries, "\n  "))
	}

	t.Run("ReadOnlyCannotWrite", func(t *testing.T) {
		ro := s.client(t, "megane-ro", s.roPass)
		writes := map[string]error{
			"SET":                                  ro.Set(ctx, ks.Base()+"x", "1", 0).Err(),
			"HSET":                                 ro.HSet(ctx, ks.Launcher(), "status", "hacked").Err(),
			"DEL":                                  ro.Del(ctx, ks.ShardMap()).Err(),
			"XADD":                                 ro.XAdd(ctx, &redis.XAddArgs{Stream: ks.Inbox("launcher"), Values: []any{"a", "b"}}).Err(),
			"PUBLISH":                              ro.Publish(ctx, ks.Broadcast(), "x").Err(),
			"EVAL":                                 ro.Eval(ctx, "return 1", []string{ks.Launcher()}).Err(),
			"EXPIRE":                               ro.Expire(ctx, ks.Launcher(), time.Second).Err(),
			"SCAN (key names of other namespaces)": ro.Scan(ctx, 0, "*", 10).Err(),
		}
		for cmd, err := range writes {
			if !isNoPerm(err) {
				t.Errorf("%s as the read-only user: %v, want NOPERM", cmd, err)
			}
		}
		var out bytes.Buffer
		err := cli.App(&out).RunContext(ctx, []string{"megane-cli", "--redis", s.roURL, "status"})
		if err == nil || !strings.Contains(err.Error(), "--namespace") {
			t.Errorf("megane-cli status without a namespace as the read-only user: %v, want a hint at --namespace", err)
		}
		for _, args := range [][]string{{"store", "set", "prefs", "k", "1"}, {"restart", "0"}, {"ping", "cluster:0"}} {
			if _, err := b.cli(s.roURL, args...); err == nil || !strings.Contains(err.Error(), "NOPERM") {
				t.Errorf("megane-cli %s as the read-only user: %v, want NOPERM", strings.Join(args, " "), err)
			}
		}
		if v, _ := s.admin.HGet(ctx, ks.Launcher(), "status").Result(); v == "hacked" {
			t.Error("the read-only user changed the launcher hash")
		}
	})

	t.Run("NoUserReachesAnotherNamespace", func(t *testing.T) {
		for user, pass := range map[string]string{"megane-bot": s.botPass, "megane-ro": s.roPass} {
			c := s.client(t, user, pass)
			for cmd, err := range map[string]error{
				"HGETALL":   c.HGetAll(ctx, other.Launcher()).Err(),
				"GET":       c.Get(ctx, other.Base()+"x").Err(),
				"SET":       c.Set(ctx, other.Base()+"x", "1", 0).Err(),
				"DEL":       c.Del(ctx, other.Launcher()).Err(),
				"PUBLISH":   c.Publish(ctx, other.Broadcast(), "x").Err(),
				"SUBSCRIBE": subscribeErr(ctx, c, other.Broadcast()),
			} {
				if !isNoPerm(err) {
					t.Errorf("%s %s of another namespace: %v, want NOPERM", user, cmd, err)
				}
			}
			if _, err := runCLI("redis://"+user+":"+pass+"@"+s.addr, other.Namespace(), "status"); err == nil ||
				!strings.Contains(err.Error(), "NOPERM") {
				t.Errorf("megane-cli status of another namespace as %s: %v, want NOPERM", user, err)
			}
		}
		if n, _ := s.admin.Exists(ctx, other.Launcher()).Result(); n != 1 {
			t.Error("another namespace's key was deleted")
		}
	})

	t.Run("BotHasNoServerCommands", func(t *testing.T) {
		bot := s.client(t, "megane-bot", s.botPass)
		for cmd, args := range map[string][]any{
			"FLUSHALL": {"FLUSHALL"}, "KEYS": {"KEYS", "*"}, "SCAN": {"SCAN", "0"}, "CONFIG GET": {"CONFIG", "GET", "*"},
			"ACL LIST": {"ACL", "LIST"}, "INFO": {"INFO"}, "CLIENT LIST": {"CLIENT", "LIST"}, "SHUTDOWN": {"SHUTDOWN"},
			"FUNCTION FLUSH": {"FUNCTION", "FLUSH"}, "SCRIPT FLUSH": {"SCRIPT", "FLUSH"},
		} {
			if err := bot.Do(ctx, args...).Err(); !isNoPerm(err) {
				t.Errorf("%s as the bot: %v, want NOPERM", cmd, err)
			}
		}
	})

	t.Run("PasswordsStayOutOfLogsAndErrors", func(t *testing.T) {
		for _, p := range []string{s.botPass, s.roPass} {
			if b.logHolds(p) {
				t.Errorf("the launcher's log shows a password")
			}
		}
		wrongPass := secret(t)
		_, err := b.cli("redis://megane-bot:"+wrongPass+"@"+s.addr+"/0", "status")
		if err == nil || !strings.Contains(err.Error(), "WRONGPASS") || strings.Contains(err.Error(), wrongPass) {
			t.Errorf("megane-cli with a wrong password: %v, want WRONGPASS without the password", err)
		}
		pass := secret(t)
		bad := startSecureBot(t, "redis://megane-bot:"+pass+"@"+s.addr+"/0", ks)
		select {
		case <-bad.launcher.Exited():
		case <-time.After(30 * time.Second):
			t.Fatal("a launcher with a wrong Redis password did not exit")
		}
		if bad.launcher.Err() == nil {
			t.Error("a launcher with a wrong Redis password exited cleanly")
		}
		if !bad.logHolds("WRONGPASS") || bad.logHolds(pass) {
			t.Errorf("the failed launcher's log should say WRONGPASS and not show the password")
		}
	})
}

// subscribeErr subscribes c to channel and returns the server's answer.
func subscribeErr(ctx context.Context, c *redis.Client, channel string) error {
	ps := c.Subscribe(ctx)
	defer ps.Close()
	if err := ps.Subscribe(ctx, channel); err != nil {
		return err
	}
	rctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err := ps.Receive(rctx)
	if errors.Is(err, context.DeadlineExceeded) {
		return errors.New("subscribed")
	}
	return err
}
