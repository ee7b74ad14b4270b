// Package cli is megane-cli: inspect and control a running Megane bot from
// any machine that reaches its Redis. It is built only on the public
// packages (inspect, lifecycle, redisipc, control, stats, store, cache), so
// everything it shows and does is available to user code too.
package cli

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/megane-go/megane/redisipc"
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
			{Name: "stats", Usage: "statistics every process reports (CPU since last sample, memory, guilds, custom fields)",
				Flags: []ucli.Flag{
					&ucli.BoolFlag{Name: "watch", Aliases: []string{"w"}, Usage: "print them again every --interval until interrupted"},
					&ucli.DurationFlag{Name: "interval", Aliases: []string{"i"}, Value: 2 * time.Second, Usage: "with --watch: time between two prints (100ms..1h)"},
				}, Before: all(noArgs("stats [--watch [--interval 2s]]"), checkWatchInterval), Action: cmdStats},
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
			{Name: "rolling-restart", Usage: "restart every cluster in turn, then the services, from the launcher's binary (deploys a replaced build); one line per step, then a summary",
				Flags: []ucli.Flag{
					&ucli.IntFlag{Name: "parallel", Aliases: []string{"k"}, Value: 1, Usage: "processes restarted at once (1..1024)"},
					&ucli.BoolFlag{Name: "skip-services", Usage: "restart only the clusters"},
				}, Before: noArgs("rolling-restart [--parallel k] [--skip-services]"), Action: cmdRolling},
			{Name: "reshard", Usage: "change the shard count without downtime: a new generation of shards identifies beside the running one, then replaces it (sessions resumed); one line per step, then a summary",
				Flags: []ucli.Flag{
					&ucli.IntFlag{Name: "shards", Aliases: []string{"n"}, Value: 0, Usage: "the new shard count (default: Discord's recommendation, rounded as the launcher is configured)"},
				}, Before: noArgs("reshard [--shards N]"), Action: cmdReshard},
			{Name: "shutdown", Usage: "stop the launcher gracefully (sessions are saved); with several launchers, all of them or --launcher ID",
				Before: noArgs("shutdown"), Action: cmdShutdown,
				Flags: []ucli.Flag{
					&ucli.StringFlag{Name: "launcher", Usage: "stop only this launcher (several per bot; ids in megane-cli status); its clusters move to the others"},
					&ucli.BoolFlag{Name: "drain", Usage: "with --launcher: hand its clusters over one at a time (each resumed elsewhere) before it stops"},
				}},
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
			healthCommand(),
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
