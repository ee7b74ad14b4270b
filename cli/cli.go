// Package cli is megane-cli: inspect and control a running Megane bot from
// any machine that reaches its Redis. It is built only on the public
// packages (inspect, lifecycle, redisipc, control, stats, store, cache), so
// everything it shows and does is available to user code too.
package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
	ucli "github.com/urfave/cli/v2"

	"github.com/megane-go/megane/cache"
	"github.com/megane-go/megane/control"
	"github.com/megane-go/megane/inspect"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/lifecycle"
	"github.com/megane-go/megane/redisconn"
	"github.com/megane-go/megane/redisipc"
	"github.com/megane-go/megane/stats"
	"github.com/megane-go/megane/store"
)

// App returns the megane-cli application. out receives command output.
func App(out io.Writer) *ucli.App {
	return &ucli.App{
		Name:      "megane-cli",
		Usage:     "inspect and control a Megane bot through its Redis",
		Writer:    out,
		ErrWriter: os.Stderr,
		Before:    checkTimeout,
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "redis", Aliases: []string{"r"}, EnvVars: []string{"REDIS_URL"}, Value: "redis://127.0.0.1:6379/0", Usage: "Redis URL (redis://, rediss:// with tls_ca_file=, tls_cert_file=, tls_key_file=; redis+cluster://, redis+sentinel://)"},
			&ucli.StringFlag{Name: "namespace", Aliases: []string{"n"}, EnvVars: []string{"MEGANE_NAMESPACE"}, Usage: "bot namespace (default: the only one in Redis)"},
			&ucli.BoolFlag{Name: "json", Usage: "print JSON instead of tables"},
			&ucli.DurationFlag{Name: "timeout", Value: 10 * time.Second, Usage: "deadline of each request (1ms..24h)"},
		},
		Commands: []*ucli.Command{
			{Name: "namespaces", Usage: "list the bot namespaces in this Redis", Before: noArgs("namespaces"), Action: cmdNamespaces},
			{Name: "status", Usage: "launcher, clusters, shards, sessions and gateway limits", Before: noArgs("status"), Action: cmdStatus},
			{Name: "nodes", Usage: "live IPC nodes (launcher, clusters, services, CLIs)", Before: noArgs("nodes"), Action: cmdNodes},
			{Name: "stats", Usage: "statistics every process reports (CPU since last sample, memory, guilds, custom fields)", Before: noArgs("stats"), Action: cmdStats},
			{Name: "events", Usage: "lifecycle events (cluster spawned/ready/exited, shard resumed, …)",
				Flags: []ucli.Flag{
					&ucli.IntFlag{Name: "count", Aliases: []string{"c"}, Value: 50, Usage: fmt.Sprintf("how many recent events (0..%d)", maxEvents)},
					&ucli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing new events"},
				}, Before: all(noArgs("events [--count n] [--follow]"), checkCount(0, maxEvents)), Action: cmdEvents},
			{Name: "restart", Usage: "restart one cluster (its shards resume)", ArgsUsage: "<cluster id>",
				Before: all(checkArgs(1, 1, "restart <cluster id>"), func(c *ucli.Context) error {
					_, err := parseClusterID(c.Args().First())
					return err
				}), Action: cmdRestart},
			{Name: "restart-service", Usage: "restart a service's copies one at a time (also revives copies the launcher gave up on)", ArgsUsage: "<service name>",
				Flags: []ucli.Flag{
					&ucli.IntFlag{Name: "copy", Aliases: []string{"c"}, Value: -1, Usage: "restart only this copy (default: every copy, in turn)"},
				}, Before: checkRestartService, Action: cmdRestartService},
			{Name: "rolling-restart", Usage: "restart every cluster in turn", Before: noArgs("rolling-restart"), Action: cmdRolling},
			{Name: "shutdown", Usage: "stop the launcher gracefully (sessions are saved)", Before: noArgs("shutdown"), Action: cmdShutdown},
			{Name: "eval", Usage: "evaluate an expression on clusters/services/the launcher", ArgsUsage: "<expression>",
				Flags: []ucli.Flag{
					&ucli.StringFlag{Name: "target", Aliases: []string{"t"}, Value: redisipc.TargetClusters, Usage: "clusters, services, all, launcher, cluster:<id> or service:<name>"},
				}, Before: all(checkArgs(1, math.MaxInt, "eval [--target clusters] <expression>"), func(c *ucli.Context) error {
					if strings.TrimSpace(strings.Join(c.Args().Slice(), " ")) == "" {
						return usageErr("eval: the expression is empty")
					}
					return checkNodeArg("--target", c.String("target"))
				}), Action: cmdEval},
			{Name: "ping", Usage: "ping a node", ArgsUsage: "<address>",
				Before: all(checkArgs(1, 1, "ping <address>  (e.g. cluster:0, service:stats, launcher)"), func(c *ucli.Context) error {
					return checkNodeArg("address", c.Args().First())
				}), Action: cmdPing},
			{Name: "store", Usage: "read and write the central store", Subcommands: storeCommands()},
			{Name: "cache", Usage: "read the cache projections", Subcommands: cacheCommands()},
			{Name: "deadletter", Usage: "messages IPC could not handle, with the reason",
				Flags:  []ucli.Flag{&ucli.IntFlag{Name: "count", Aliases: []string{"c"}, Value: 20, Usage: fmt.Sprintf("how many recent messages (1..%d)", maxDeadLetters)}},
				Before: all(noArgs("deadletter [--count n]"), checkCount(1, maxDeadLetters)), Action: cmdDeadLetter},
		},
	}
}

// Main runs megane-cli with the process arguments and exits.
func Main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := App(os.Stdout).RunContext(ctx, os.Args); err != nil {
		fmt.Fprintln(os.Stderr, "megane-cli:", err)
		os.Exit(1)
	}
}

// env is what every command needs: a Redis client and a namespace.
type env struct {
	rdb     redis.UniversalClient
	ks      keyspace.Keyspace
	json    bool
	timeout time.Duration
	out     io.Writer
}

func open(c *ucli.Context) (*env, error) {
	rdb, err := redisconn.Open(c.Context, c.String("redis"))
	if err != nil {
		return nil, err
	}
	ns := c.String("namespace")
	if ns == "" {
		// Leftovers of stopped bots and of starts that failed do not make
		// the live bot ambiguous; they are mentioned, not chosen.
		chosen, others, err := inspect.DefaultNamespace(c.Context, rdb)
		switch {
		case errors.Is(err, inspect.ErrNoNamespace):
			_ = rdb.Close()
			return nil, errors.New("no Megane bot found in this Redis; is the launcher running, and is --redis right?")
		case errors.Is(err, inspect.ErrAmbiguousNamespace):
			_ = rdb.Close()
			return nil, fmt.Errorf("%w; pick one with --namespace", err)
		case err != nil:
			_ = rdb.Close()
			if strings.Contains(err.Error(), "NOPERM") {
				// The README's ACLs refuse SCAN, which would show other namespaces.
				return nil, fmt.Errorf("%w; name the bot's namespace with --namespace or MEGANE_NAMESPACE", err)
			}
			return nil, err
		}
		ns = chosen
		if len(others) > 0 {
			desc := make([]string, len(others))
			for i, o := range others {
				desc[i] = o.Name + " (" + o.State() + ")"
			}
			fmt.Fprintf(c.App.ErrWriter, "megane-cli: using namespace %s; also in this Redis: %s\n", ns, strings.Join(desc, ", "))
		}
	}
	ks, err := keyspace.New(ns)
	if err != nil {
		_ = rdb.Close()
		return nil, err
	}
	return &env{rdb: rdb, ks: ks, json: c.Bool("json"), timeout: c.Duration("timeout"), out: c.App.Writer}, nil
}

func (e *env) close() { _ = e.rdb.Close() }

// withNode runs fn with a short-lived IPC node of its own ("cli:<random>")
// and a context that ends after timeout.
func (e *env) withNode(parent context.Context, timeout time.Duration, fn func(ctx context.Context, n *redisipc.Node) error) error {
	ctx, cancel := context.WithTimeout(parent, timeout)
	defer cancel()
	var b [4]byte
	_, _ = rand.Read(b[:])
	n, err := redisipc.New(ctx, redisipc.Options{Redis: e.rdb, Keys: e.ks, Addr: "cli:" + hex.EncodeToString(b[:])})
	if err != nil {
		return err
	}
	defer n.Close(context.Background())
	return fn(ctx, n)
}

func (e *env) printJSON(v any) error {
	enc := json.NewEncoder(e.out)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func (e *env) table() *tabwriter.Writer { return tabwriter.NewWriter(e.out, 0, 2, 2, ' ', 0) }

// withEnv opens the environment, runs fn and closes it.
func withEnv(fn func(c *ucli.Context, e *env) error) ucli.ActionFunc {
	return func(c *ucli.Context) error {
		e, err := open(c)
		if err != nil {
			return err
		}
		defer e.close()
		return fn(c, e)
	}
}

func cmdNamespaces(c *ucli.Context) error {
	rdb, err := redisconn.Open(c.Context, c.String("redis"))
	if err != nil {
		return err
	}
	defer rdb.Close()
	found, err := inspect.Namespaces(c.Context, rdb)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return json.NewEncoder(c.App.Writer).Encode(found)
	}
	for _, ns := range found {
		fmt.Fprintln(c.App.Writer, ns)
	}
	return nil
}

var cmdStatus = withEnv(func(c *ucli.Context, e *env) error {
	ov, err := inspect.New(e.rdb, e.ks).Overview(c.Context)
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(ov)
	}
	now := time.Now()
	fmt.Fprintf(e.out, "namespace %s   shards %d   max_concurrency %d   session starts %d/%d left",
		ov.Namespace, ov.ShardCount, ov.Gateway.MaxConcurrency, ov.Gateway.Remaining, ov.Gateway.Total)
	if !ov.Gateway.ResetAt.IsZero() {
		fmt.Fprintf(e.out, " (reset in %s)", time.Until(ov.Gateway.ResetAt).Round(time.Second))
	}
	fmt.Fprintln(e.out)
	if ov.Launcher != nil {
		fmt.Fprintf(e.out, "launcher pid %s on %s, status %s, up %s\n",
			orDash(ov.Launcher["pid"]), orDash(ov.Launcher["host"]), orDash(ov.Launcher["status"]), inspect.Age(ov.Launcher, "started_at", now))
	}
	fmt.Fprintln(e.out)
	w := e.table()
	fmt.Fprintln(w, "CLUSTER\tSTATUS\tALIVE\tPID\tSHARDS\tRESTARTS\tUP")
	for _, cl := range ov.Clusters {
		fmt.Fprintf(w, "%d\t%s\t%v\t%s\t%s\t%s\t%s\n", cl.ID, orDash(cl.Status), cl.Alive, orDash(cl.Fields["pid"]),
			ranges(cl.Shards), orDash(cl.Fields["restarts"]), inspect.Age(cl.Fields, "started_at", now))
	}
	_ = w.Flush()
	fmt.Fprintln(e.out)
	w = e.table()
	fmt.Fprintln(w, "SHARD\tCLUSTER\tSTATUS\tGUILDS\tLATENCY\tSESSION\tSEQ\tSAVED")
	for _, s := range ov.Shards {
		sess, seq, saved := "-", "-", "-"
		if s.Session.SessionID != "" {
			sess = s.Session.SessionID
			if len(sess) > 12 {
				sess = sess[:12] + "…"
			}
			seq = strconv.Itoa(s.Session.Sequence)
			saved = now.Sub(s.Session.UpdatedAt).Round(time.Second).String()
		}
		guilds := "-"
		if s.Guilds >= 0 {
			guilds = strconv.Itoa(s.Guilds)
		}
		fmt.Fprintf(w, "%d\t%d\t%s\t%s\t%dms\t%s\t%s\t%s ago\n", s.ID, s.Cluster, orDash(s.Status), guilds, s.LatencyMS, sess, seq, saved)
	}
	return w.Flush()
})

var cmdNodes = withEnv(func(c *ucli.Context, e *env) error {
	nodes, err := redisipc.LiveNodes(c.Context, e.rdb, e.ks)
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(nodes)
	}
	w := e.table()
	fmt.Fprintln(w, "ADDRESS\tINSTANCE\tPID\tHOST\tUP")
	for _, n := range nodes {
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", n.Addr, n.Instance, n.PID, n.Host, time.Since(n.StartedAt).Round(time.Second))
	}
	return w.Flush()
})

var cmdStats = withEnv(func(c *ucli.Context, e *env) error {
	reports, err := stats.ReadAll(c.Context, e.rdb, e.ks, 0)
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(reports)
	}
	if len(reports) == 0 {
		fmt.Fprintln(e.out, "no process has reported statistics (they report every few seconds while running)")
		return nil
	}
	// Built-in columns first, then every custom field any process reports.
	cols := []string{"cpu_percent", "rss_bytes", "heap_bytes", "goroutines", "uptime_seconds"}
	known := map[string]bool{"pid": true, "host": true, "updated_at": true, "gc_cycles": true}
	for _, c := range cols {
		known[c] = true
	}
	var custom []string
	for _, r := range reports {
		for f := range r.Fields {
			if !known[f] {
				known[f] = true
				custom = append(custom, f)
			}
		}
	}
	sort.Strings(custom)
	cols = append(cols, custom...)
	w := e.table()
	fmt.Fprint(w, "PROCESS\tPID")
	for _, c := range cols {
		fmt.Fprint(w, "\t", strings.ToUpper(c))
	}
	fmt.Fprintln(w)
	for _, r := range reports {
		fmt.Fprintf(w, "%s\t%s", r.Name, orDash(r.Text("pid")))
		for _, c := range cols {
			v := r.Text(c)
			if n, ok := r.Float(c); ok && strings.HasSuffix(c, "_bytes") {
				v = fmt.Sprintf("%.1fMiB", n/(1<<20))
			}
			fmt.Fprint(w, "\t", orDash(v))
		}
		fmt.Fprintln(w)
	}
	return w.Flush()
})

var cmdEvents = withEnv(func(c *ucli.Context, e *env) error {
	n := c.Int("count")
	// Read the last n entries: XREVRANGE through Read is not offered, so
	// read from the start and keep the tail (the stream is capped).
	var all []lifecycle.Event
	after := ""
	for {
		evs, next, err := lifecycle.Read(c.Context, e.rdb, e.ks, after, 1000)
		if err != nil {
			return err
		}
		all = append(all, evs...)
		if len(all) > n {
			all = all[len(all)-n:]
		}
		if len(evs) == 0 || next == after {
			break
		}
		after = next
	}
	for _, ev := range all {
		if err := e.printEvent(ev); err != nil {
			return err
		}
	}
	if !c.Bool("follow") {
		return nil
	}
	for {
		evs, next, err := lifecycle.Follow(c.Context, e.rdb, e.ks, after, 100, 5*time.Second)
		if err != nil {
			if c.Context.Err() != nil {
				return nil
			}
			return err
		}
		for _, ev := range evs {
			if err := e.printEvent(ev); err != nil {
				return err
			}
		}
		after = next
	}
})

func (e *env) printEvent(ev lifecycle.Event) error {
	if e.json {
		return json.NewEncoder(e.out).Encode(ev)
	}
	who := ""
	if ev.Cluster >= 0 {
		who += fmt.Sprintf(" cluster=%d", ev.Cluster)
	}
	if ev.Shard >= 0 {
		who += fmt.Sprintf(" shard=%d", ev.Shard)
	}
	if ev.Service != "" {
		who += " service=" + ev.Service
	}
	detail := ""
	if ev.Detail != "" {
		detail = "  " + ev.Detail
	}
	_, err := fmt.Fprintf(e.out, "%s  %-20s%s%s\n", ev.At.Format("15:04:05.000"), ev.Type, who, detail)
	return err
}

// callLauncher runs fn, a call of the control protocol, with the command's
// deadline, and prints its reply.
func callLauncher(c *ucli.Context, timeout time.Duration, fn func(ctx context.Context, n *redisipc.Node) (any, error)) error {
	return withEnv(func(c *ucli.Context, e *env) error {
		return e.withNode(c.Context, timeout, func(ctx context.Context, n *redisipc.Node) error {
			out, err := fn(ctx, n)
			if errors.Is(err, redisipc.ErrNoResponders) {
				return fmt.Errorf("no launcher is running in namespace %s: %w", e.ks.Namespace(), err)
			}
			if err != nil {
				return err
			}
			if out == nil {
				fmt.Fprintln(e.out, "ok")
				return nil
			}
			// Through a generic value, so the keys print sorted, as they
			// always have.
			b, err := json.Marshal(out)
			if err != nil {
				return err
			}
			var v any
			if err := json.Unmarshal(b, &v); err != nil {
				return err
			}
			return e.printJSON(v)
		})
	})(c)
}

func cmdRestart(c *ucli.Context) error {
	id, err := parseClusterID(c.Args().First())
	if err != nil {
		return err
	}
	// A restart waits for the cluster to be ready again.
	return callLauncher(c, max(c.Duration("timeout"), 2*time.Minute), func(ctx context.Context, n *redisipc.Node) (any, error) {
		return control.RestartCluster(ctx, n, id)
	})
}

func cmdRestartService(c *ucli.Context) error {
	name, copyN := c.Args().First(), control.AllCopies
	if n := c.Int("copy"); n >= 0 {
		copyN = n
	}
	// Each copy is restarted once the previous one is ready again.
	return callLauncher(c, max(c.Duration("timeout"), 5*time.Minute), func(ctx context.Context, n *redisipc.Node) (any, error) {
		return control.RestartService(ctx, n, name, copyN)
	})
}

func cmdRolling(c *ucli.Context) error {
	return callLauncher(c, max(c.Duration("timeout"), 30*time.Minute), func(ctx context.Context, n *redisipc.Node) (any, error) {
		return control.RollingRestart(ctx, n)
	})
}

func cmdShutdown(c *ucli.Context) error {
	return callLauncher(c, c.Duration("timeout"), func(ctx context.Context, n *redisipc.Node) (any, error) {
		return control.ShutdownReply{OK: true}, control.Shutdown(ctx, n)
	})
}

var cmdEval = withEnv(func(c *ucli.Context, e *env) error {
	expr := strings.Join(c.Args().Slice(), " ")
	return e.withNode(c.Context, e.timeout, func(ctx context.Context, n *redisipc.Node) error {
		g, err := n.Eval(ctx, c.String("target"), expr)
		if err != nil {
			return err
		}
		return e.printGathered(g)
	})
})

func (e *env) printGathered(g *redisipc.Gathered) error {
	if e.json {
		type answer struct {
			From   string          `json:"from"`
			Result json.RawMessage `json:"result,omitempty"`
			Error  string          `json:"error,omitempty"`
		}
		out := struct {
			Answers []answer `json:"answers"`
			Missing []string `json:"missing"`
		}{Missing: g.Missing}
		for _, a := range g.Answers {
			an := answer{From: a.From}
			if a.Err != nil {
				an.Error = a.Err.Error()
			} else if json.Valid(a.Payload) {
				an.Result = a.Payload
			} else {
				an.Result, _ = json.Marshal(string(a.Payload))
			}
			out.Answers = append(out.Answers, an)
		}
		return e.printJSON(out)
	}
	w := e.table()
	for _, a := range g.Answers {
		if a.Err != nil {
			fmt.Fprintf(w, "%s\terror: %v\n", a.From, a.Err)
			continue
		}
		fmt.Fprintf(w, "%s\t%s\n", a.From, a.Payload)
	}
	for _, m := range g.Missing {
		fmt.Fprintf(w, "%s\t(no answer)\n", m)
	}
	return w.Flush()
}

var cmdPing = withEnv(func(c *ucli.Context, e *env) error {
	to := c.Args().First()
	return e.withNode(c.Context, e.timeout, func(ctx context.Context, n *redisipc.Node) error {
		start := time.Now()
		out, err := n.Call(ctx, to, redisipc.OpPing, nil)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.out, "%s answered in %s: %s\n", to, time.Since(start).Round(time.Microsecond), out)
		return nil
	})
})

var cmdDeadLetter = withEnv(func(c *ucli.Context, e *env) error {
	msgs, err := e.rdb.XRevRangeN(c.Context, e.ks.DeadLetter(), "+", "-", int64(c.Int("count"))).Result()
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(msgs)
	}
	for _, m := range msgs {
		keys := make([]string, 0, len(m.Values))
		for k := range m.Values {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Fprintf(e.out, "%s", m.ID)
		for _, k := range keys {
			v := fmt.Sprint(m.Values[k])
			if len(v) > 80 {
				v = v[:80] + "…"
			}
			fmt.Fprintf(e.out, "  %s=%q", k, v)
		}
		fmt.Fprintln(e.out)
	}
	return nil
})

func storeCommands() []*ucli.Command {
	return []*ucli.Command{
		{Name: "buckets", Usage: "list buckets", Before: noArgs("store buckets"), Action: withEnv(func(c *ucli.Context, e *env) error {
			b, err := store.New(e.rdb, e.ks).Buckets(c.Context)
			if err != nil {
				return err
			}
			for _, name := range b {
				fmt.Fprintln(e.out, name)
			}
			return nil
		})},
		{Name: "keys", ArgsUsage: "<bucket>", Usage: "list a bucket's keys", Before: checkArgs(1, 1, "store keys <bucket>"), Action: withEnv(func(c *ucli.Context, e *env) error {
			a := c.Args().Slice()
			keys, err := store.New(e.rdb, e.ks).Bucket(a[0]).Keys(c.Context)
			if err != nil {
				return err
			}
			sort.Strings(keys)
			for _, k := range keys {
				fmt.Fprintln(e.out, k)
			}
			return nil
		})},
		{Name: "get", ArgsUsage: "<bucket> <key>", Usage: "print a value (JSON)", Before: checkArgs(2, 2, "store get <bucket> <key>"), Action: withEnv(func(c *ucli.Context, e *env) error {
			a := c.Args().Slice()
			v, err := store.New(e.rdb, e.ks).Bucket(a[0]).GetRaw(c.Context, a[1])
			if err != nil {
				return err
			}
			fmt.Fprintln(e.out, string(v))
			return nil
		})},
		{Name: "set", ArgsUsage: "<bucket> <key> <json>", Usage: "set a value; the value is JSON (a bare word is taken as a string)", Before: checkArgs(3, 3, "store set <bucket> <key> <json>"), Action: withEnv(func(c *ucli.Context, e *env) error {
			a := c.Args().Slice()
			var v any = json.RawMessage(a[2])
			if !json.Valid([]byte(a[2])) {
				v = a[2]
			}
			return store.New(e.rdb, e.ks).Bucket(a[0]).Set(c.Context, a[1], v)
		})},
		{Name: "del", ArgsUsage: "<bucket> <key>", Usage: "delete a key", Before: checkArgs(2, 2, "store del <bucket> <key>"), Action: withEnv(func(c *ucli.Context, e *env) error {
			a := c.Args().Slice()
			ok, err := store.New(e.rdb, e.ks).Bucket(a[0]).Delete(c.Context, a[1])
			if err != nil {
				return err
			}
			if !ok {
				return fmt.Errorf("%s/%s: %w", a[0], a[1], store.ErrNotFound)
			}
			return nil
		})},
		{Name: "incr", ArgsUsage: "<bucket> <key> [delta]", Usage: "atomically add delta (default 1)", Before: all(checkArgs(2, 3, "store incr <bucket> <key> [delta]"), func(c *ucli.Context) error {
			if c.NArg() < 3 {
				return nil
			}
			_, err := parseDelta(c.Args().Get(2))
			return err
		}), Action: withEnv(func(c *ucli.Context, e *env) error {
			delta := int64(1)
			if c.NArg() == 3 {
				d, err := parseDelta(c.Args().Get(2))
				if err != nil {
					return err
				}
				delta = d
			}
			n, err := store.New(e.rdb, e.ks).Bucket(c.Args().Get(0)).Incr(c.Context, c.Args().Get(1), delta)
			if err != nil {
				return err
			}
			fmt.Fprintln(e.out, n)
			return nil
		})},
	}
}

func cacheCommands() []*ucli.Command {
	getter := func(what string, get func(ctx context.Context, r *cache.Reader, id uint64) (any, error)) *ucli.Command {
		return &ucli.Command{Name: what, ArgsUsage: "<id>", Usage: "print a cached " + what, Before: all(checkArgs(1, 1, "cache "+what+" <id>"), func(c *ucli.Context) error {
			_, err := parseSnowflake(c.Args().First())
			return err
		}), Action: withEnv(func(c *ucli.Context, e *env) error {
			id, err := parseSnowflake(c.Args().First())
			if err != nil {
				return err
			}
			v, err := get(c.Context, cache.NewReader(e.rdb, e.ks), id)
			if err != nil {
				return err
			}
			return e.printJSON(v)
		})}
	}
	return []*ucli.Command{
		getter("guild", func(ctx context.Context, r *cache.Reader, id uint64) (any, error) { return r.Guild(ctx, id) }),
		getter("channel", func(ctx context.Context, r *cache.Reader, id uint64) (any, error) { return r.Channel(ctx, id) }),
		getter("user", func(ctx context.Context, r *cache.Reader, id uint64) (any, error) { return r.User(ctx, id) }),
		getter("role", func(ctx context.Context, r *cache.Reader, id uint64) (any, error) { return r.Role(ctx, id) }),
		{Name: "counts", Usage: "guild, channel and user counts: total and per shard", Before: noArgs("cache counts"), Action: withEnv(func(c *ucli.Context, e *env) error {
			r := cache.NewReader(e.rdb, e.ks)
			total, err := r.TotalCounts(c.Context)
			if err != nil {
				return err
			}
			ov, err := inspect.New(e.rdb, e.ks).Overview(c.Context)
			if err != nil {
				return err
			}
			perShard := map[int]cache.Counts{}
			for _, s := range ov.Shards {
				cnt, err := r.ShardCounts(c.Context, s.ID)
				if err != nil {
					return err
				}
				perShard[s.ID] = cnt
			}
			if e.json {
				return e.printJSON(map[string]any{"total": total, "shards": perShard})
			}
			if err := e.printJSON(total); err != nil {
				return err
			}
			ids := make([]int, 0, len(perShard))
			for id := range perShard {
				ids = append(ids, id)
			}
			sort.Ints(ids)
			for _, id := range ids {
				b, _ := json.Marshal(perShard[id])
				fmt.Fprintf(e.out, "shard %d: %s\n", id, b)
			}
			return nil
		})},
	}
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// ranges renders sorted shard ids compactly: 0-3,8.
func ranges(ids []int) string {
	if len(ids) == 0 {
		return "-"
	}
	var parts []string
	start, prev := ids[0], ids[0]
	flush := func() {
		if start == prev {
			parts = append(parts, strconv.Itoa(start))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", start, prev))
		}
	}
	for _, id := range ids[1:] {
		if id == prev+1 {
			prev = id
			continue
		}
		flush()
		start, prev = id, id
	}
	flush()
	return strings.Join(parts, ",")
}
