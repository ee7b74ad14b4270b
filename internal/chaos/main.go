// Command chaos is the chaos suite (scripts/chaos): it runs a real Megane
// bot (internal/chaos/chaosbot: launcher, three clusters, a service with two
// copies) against the in-repo fake Discord and a redis-server of its own,
// attacks it, and prints what it measured.
//
//	scripts/chaos            # the long form (several minutes)
//	scripts/chaos -short     # the short form CI runs (under 2 minutes)
//	scripts/chaos -only kill-storm,redis-outages
//
// Scenarios: cold starts; SIGKILL of random clusters under numbered
// messages; Redis paused, restarted with and without persistence, and out
// of memory; a service copy killed under in-flight calls; eval bombs at
// every role; gateway faults (RECONNECT storm, INVALID_SESSION, a half-open
// socket, close 4004). Each prints its figures against their targets; the
// exit status is 1 when any target is missed.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/megane-go/megane/discordtest"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/redisipc"
)

// figure is one measured value and its target.
type figure struct {
	Scenario string `json:"scenario"`
	Name     string `json:"name"`
	Value    string `json:"value"`
	Target   string `json:"target"`
	OK       bool   `json:"ok"`
}

// scenario is one attack.
type scenario struct {
	name  string
	about string
	run   func(ctx context.Context, e *env) ([]figure, error)
}

// params sizes the scenarios; short is what CI runs.
type params struct {
	coldStarts      int
	killStorm       time.Duration
	killEvery       time.Duration
	redisPause      time.Duration
	redisOOM        time.Duration
	serviceRounds   int
	reconnectRounds int
	messageInterval time.Duration
}

var (
	shortParams = params{coldStarts: 3, killStorm: 15 * time.Second, killEvery: 3 * time.Second,
		redisPause: 3 * time.Second, redisOOM: 5 * time.Second, serviceRounds: 1, reconnectRounds: 5,
		messageInterval: 20 * time.Millisecond}
	longParams = params{coldStarts: 20, killStorm: time.Minute, killEvery: 3 * time.Second,
		redisPause: 10 * time.Second, redisOOM: 40 * time.Second, serviceRounds: 5, reconnectRounds: 20,
		messageInterval: 10 * time.Millisecond}
)

// env is what every scenario shares: the bot binary, the work directory and
// the suite's redis-server.
type env struct {
	p     params
	dir   string
	bin   string
	redis *redisServer
	runs  int
}

func main() {
	short := flag.Bool("short", false, "run the short form (CI)")
	only := flag.String("only", "", "comma-separated scenarios to run (default: all)")
	keep := flag.Bool("keep", false, "keep the work directory (logs, Redis files) afterwards")
	asJSON := flag.Bool("json", false, "print the figures as JSON")
	list := flag.Bool("list", false, "list the scenarios and exit")
	flag.Parse()

	all := scenarios()
	if *list {
		for _, s := range all {
			fmt.Printf("%-16s %s\n", s.name, s.about)
		}
		return
	}
	chosen, err := choose(all, *only)
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	e := &env{p: longParams}
	form := "long"
	if *short {
		e.p, form = shortParams, "short"
	}
	e.dir, err = os.MkdirTemp("", "megane-chaos-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "chaos:", err)
		os.Exit(1)
	}
	if !*keep {
		defer os.RemoveAll(e.dir)
	}
	code := e.runAll(ctx, chosen, form, *asJSON)
	if *keep {
		fmt.Fprintf(os.Stderr, "chaos: logs and Redis files kept in %s\n", e.dir)
	}
	if code != 0 {
		os.Exit(code)
	}
}

func choose(all []scenario, only string) ([]scenario, error) {
	if only == "" {
		return all, nil
	}
	var out []scenario
	for _, name := range strings.Split(only, ",") {
		found := false
		for _, s := range all {
			if s.name == strings.TrimSpace(name) {
				out, found = append(out, s), true
			}
		}
		if !found {
			return nil, fmt.Errorf("unknown scenario %q (-list shows them)", name)
		}
	}
	return out, nil
}

func (e *env) runAll(ctx context.Context, chosen []scenario, form string, asJSON bool) int {
	start := time.Now()
	logf("chaos: %s form, %d scenarios, work directory %s", form, len(chosen), e.dir)
	e.bin = filepath.Join(e.dir, "chaosbot")
	build := exec.CommandContext(ctx, "go", "build", "-o", e.bin, "./internal/chaos/chaosbot")
	build.Stdout, build.Stderr = os.Stderr, os.Stderr
	if err := build.Run(); err != nil {
		logf("chaos: build chaosbot: %v", err)
		return 1
	}
	port, err := freePort()
	if err == nil {
		e.redis, err = startRedis(filepath.Join(e.dir, "redis"), port)
	}
	if err != nil {
		logf("chaos: %v", err)
		return 1
	}
	defer e.redis.stop(syscall.SIGKILL)

	var figs []figure
	failed := 0
	for _, s := range chosen {
		if ctx.Err() != nil {
			break
		}
		logf("chaos: %s: %s", s.name, s.about)
		t0 := time.Now()
		got, err := s.run(ctx, e)
		for _, f := range got {
			f.Scenario = s.name
			figs = append(figs, f)
			mark := "ok"
			if !f.OK {
				mark = "MISSED"
				failed++
			}
			logf("chaos:   %-34s %-14s target %-14s %s", f.Name, f.Value, f.Target, mark)
		}
		if err != nil && !errors.Is(err, errSkipped) {
			failed++
			figs = append(figs, figure{Scenario: s.name, Name: "ran to the end", Value: err.Error(), Target: "no error"})
			logf("chaos:   FAILED: %v", err)
		}
		logf("chaos: %s took %s", s.name, time.Since(t0).Round(100*time.Millisecond))
	}
	if asJSON {
		out, _ := json.MarshalIndent(figs, "", "  ")
		fmt.Println(string(out))
	} else {
		tw := tabwriter.NewWriter(os.Stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "scenario\tfigure\tvalue\ttarget\tmet")
		for _, f := range figs {
			met := "yes"
			if !f.OK {
				met = "NO"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", f.Scenario, f.Name, f.Value, f.Target, met)
		}
		_ = tw.Flush()
	}
	logf("chaos: %s form done in %s: %d figures, %d missed", form, time.Since(start).Round(time.Second), len(figs), failed)
	if ctx.Err() != nil {
		return 130
	}
	if failed > 0 {
		return 1
	}
	return 0
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, format+"\n", args...)
}

// fleet is one bot run of a scenario: a fresh fake Discord, a fresh
// namespace in the suite's Redis, and the launcher.
type fleet struct {
	e     *env
	name  string
	srv   *discordtest.Server
	ks    keyspace.Keyspace
	rdb   redisClient
	bot   *bot
	node  *redisipc.Node
	opts  fleetOptions
	ready time.Duration
}

type fleetOptions struct {
	clusters, shards, guilds, slowCopies int
	env                                  []string
	heartbeatTimeout                     time.Duration
}

func (o *fleetOptions) defaults() {
	if o.clusters == 0 {
		o.clusters = 3
	}
	if o.shards == 0 {
		o.shards = 6
	}
	if o.guilds == 0 {
		o.guilds = 24
	}
}
