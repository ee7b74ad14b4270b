package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/megane-go/megane/control"
	"github.com/megane-go/megane/leases"
	"github.com/megane-go/megane/lifecycle"
	"github.com/megane-go/megane/redisipc"
	"github.com/megane-go/megane/shardmap"
)

// callLauncher runs fn, a call of the control protocol, with the command's
// deadline, and prints its reply.
func callLauncher(c *ucli.Context, timeout time.Duration, fn func(ctx context.Context, e *env, n *redisipc.Node) (any, error)) error {
	return withEnv(func(c *ucli.Context, e *env) error {
		return e.withNode(c.Context, timeout, func(ctx context.Context, n *redisipc.Node) error {
			out, err := fn(ctx, e, n)
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
	return callLauncher(c, max(c.Duration("timeout"), 2*time.Minute), func(ctx context.Context, e *env, n *redisipc.Node) (any, error) {
		at, err := e.ownerOf(ctx, leases.ClusterName(id))
		if err != nil {
			return nil, err
		}
		defer e.followEvents(ctx, fmt.Sprintf("cluster %d to restart and be ready", id), clusterEvents(id)).stop()
		return control.RestartCluster(ctx, n, id, at...)
	})
}

func cmdRestartService(c *ucli.Context) error {
	name, copyN := c.Args().First(), control.AllCopies
	if n := c.Int("copy"); n >= 0 {
		copyN = n
	}
	// Each copy is restarted once the previous one is ready again.
	return callLauncher(c, max(c.Duration("timeout"), 5*time.Minute), func(ctx context.Context, e *env, n *redisipc.Node) (any, error) {
		defer e.followEvents(ctx, "service "+name+" to restart and be ready", serviceEvents(name)).stop()
		ls, err := leases.Launchers(ctx, e.rdb, e.ks)
		if err != nil || len(ls) == 0 {
			if err != nil {
				return nil, err
			}
			return control.RestartService(ctx, n, name, copyN)
		}
		if copyN != control.AllCopies {
			at, err := e.ownerOf(ctx, leases.ServiceName(name, copyN))
			if err != nil {
				return nil, err
			}
			return control.RestartService(ctx, n, name, copyN, at...)
		}
		// Several launchers: each restarts the copies it owns, one
		// launcher after the other.
		var out []control.ServiceStatus
		for _, l := range ls {
			st, err := control.FetchStatus(ctx, n, control.At(l.Addr))
			if err != nil {
				return nil, fmt.Errorf("launcher %s: %w", l.ID, err)
			}
			for _, s := range st.Services {
				if s.Name != name {
					continue
				}
				fmt.Fprintf(e.errOut(), "restarting %s#%d on launcher %s\n", name, s.Copy, l.ID)
				got, err := control.RestartService(ctx, n, name, s.Copy, control.At(l.Addr))
				if err != nil {
					return nil, fmt.Errorf("launcher %s: %w", l.ID, err)
				}
				out = append(out, got...)
			}
		}
		if len(out) == 0 {
			return nil, fmt.Errorf("no launcher runs a service %q", name)
		}
		return out, nil
	})
}

func cmdRolling(c *ucli.Context) error {
	req := control.RollingRestartRequest{Parallel: c.Int("parallel"), SkipServices: c.Bool("skip-services")}
	if req.Parallel < 1 || req.Parallel > 1024 {
		return usageErr("--parallel %d is outside 1..1024", req.Parallel)
	}
	return callLauncher(c, max(c.Duration("timeout"), 30*time.Minute), func(ctx context.Context, e *env, n *redisipc.Node) (any, error) {
		ls, err := leases.Launchers(ctx, e.rdb, e.ks)
		if err != nil {
			return nil, err
		}
		targets := [][]control.CallOption{nil}
		if len(ls) > 0 {
			// Several launchers: each rolls its own, one after the other.
			targets = targets[:0]
			for _, l := range ls {
				targets = append(targets, []control.CallOption{control.At(l.Addr)})
			}
		}
		steps := e.followSteps(ctx)
		defer steps.stop()
		var reps []control.RollingRestartReply
		var total control.RollingRestartReply
		for i, at := range targets {
			if len(ls) > 0 {
				steps.say("rolling restart on launcher %s (clusters %s)\n", ls[i].ID, orDash(shardmap.FormatRanges(ls[i].Owned)))
			}
			rep, err := control.RollingRestart(ctx, n, req, at...)
			steps.flush(rep.Steps)
			if err != nil {
				steps.say("rolling restart FAILED: %v\n", err)
				return nil, err
			}
			reps = append(reps, rep)
			total.Steps = append(total.Steps, rep.Steps...)
			total.Took += rep.Took
			total.Resumed += rep.Resumed
			total.Identified += rep.Identified
			total.Replayed += rep.Replayed
		}
		steps.say("rolled %d steps in %s: %d shards resumed, %d identified, %d events replayed\n",
			len(total.Steps), total.Took.Round(time.Millisecond), total.Resumed, total.Identified, total.Replayed)
		if len(reps) == 1 {
			return reps[0], nil
		}
		return reps, nil
	})
}

// stepPrinter prints a rolling restart's steps as the launcher publishes
// them (lifecycle.RollStep), and the ones a reply carries that it did not
// see yet.
type stepPrinter struct {
	e       *env
	mu      sync.Mutex
	printed int
	seen    map[string]bool // lines printed: a step's event and its reply's copy print once
	stop    func()
}

func (e *env) followSteps(ctx context.Context) *stepPrinter {
	return e.followStepsOf(ctx, lifecycle.RollStep)
}

// followStepsOf prints the events of type t as steps.
func (e *env) followStepsOf(ctx context.Context, t lifecycle.Type) *stepPrinter {
	p := &stepPrinter{e: e, seen: map[string]bool{}}
	p.stop = e.tailEvents(ctx, func(evs []lifecycle.Event) {
		for _, ev := range evs {
			if ev.Type == t {
				p.print(ev.Detail)
			}
		}
	})
	return p
}

// say prints a line of the command's own, never interleaved with a step.
func (p *stepPrinter) say(format string, args ...any) {
	p.mu.Lock()
	defer p.mu.Unlock()
	fmt.Fprintf(p.e.errOut(), format, args...)
}

func (p *stepPrinter) print(line string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.seen[line] {
		return
	}
	p.seen[line] = true
	p.printed++
	fmt.Fprintf(p.e.errOut(), "step %d: %s\n", p.printed, line)
}

// flush prints the steps of a reply that were not printed yet.
func (p *stepPrinter) flush(steps []control.RollStep) {
	for _, s := range steps {
		p.print(s.String())
	}
}

// flushDetails prints the details that were not printed yet.
func (p *stepPrinter) flushDetails(details []string) {
	for _, d := range details {
		p.print(d)
	}
}

func cmdReshard(c *ucli.Context) error {
	req := control.ReshardRequest{Shards: c.Int("shards")}
	if req.Shards < 0 || req.Shards > maxShardsArg {
		return usageErr("--shards %d is outside 0..%d (0: Discord's recommendation)", req.Shards, maxShardsArg)
	}
	return callLauncher(c, max(c.Duration("timeout"), 30*time.Minute), func(ctx context.Context, e *env, n *redisipc.Node) (any, error) {
		ls, err := leases.Launchers(ctx, e.rdb, e.ks)
		if err != nil {
			return nil, err
		}
		var at []control.CallOption
		if len(ls) > 0 {
			// Several launchers: one runs the re-shard, the others follow.
			at = append(at, control.At(ls[0].Addr))
		}
		steps := e.followStepsOf(ctx, lifecycle.ReshardStep)
		defer steps.stop()
		if len(ls) > 0 {
			steps.say("re-shard run by launcher %s, with %d other launchers\n", ls[0].ID, len(ls)-1)
		}
		rep, err := control.Reshard(ctx, n, req, at...)
		details := make([]string, len(rep.Steps))
		for i, s := range rep.Steps {
			details[i] = s.Phase + ": " + s.Detail
		}
		steps.flushDetails(details)
		if err != nil {
			steps.say("re-shard FAILED: %v\n", err)
			return nil, err
		}
		steps.say("re-sharded %d → %d shards in %s (switch %s): %d identified, %d resumed, %d events replayed\n",
			rep.From, rep.To, rep.Took.Round(time.Millisecond), rep.Switch.Round(time.Millisecond), rep.Identified, rep.Resumed, rep.Replayed)
		return rep, nil
	})
}

func cmdShutdown(c *ucli.Context) error {
	only, drain := c.String("launcher"), c.Bool("drain")
	if drain && only == "" {
		return usageErr("--drain needs --launcher ID: the launcher whose clusters move to the others")
	}
	timeout := c.Duration("timeout")
	if drain {
		timeout = max(timeout, 30*time.Minute)
	}
	return callLauncher(c, timeout, func(ctx context.Context, e *env, n *redisipc.Node) (any, error) {
		ls, err := leases.Launchers(ctx, e.rdb, e.ks)
		if err != nil {
			return nil, err
		}
		if len(ls) == 0 {
			if only != "" {
				return nil, fmt.Errorf("--launcher %s: one launcher runs this bot; shut it down without --launcher", only)
			}
			return control.ShutdownReply{OK: true}, control.Shutdown(ctx, n)
		}
		stopped := 0
		for _, l := range ls {
			if only != "" && l.ID != only {
				continue
			}
			if drain {
				fmt.Fprintf(e.errOut(), "draining launcher %s: its clusters (%s) move to the others one at a time\n", l.ID, orDash(shardmap.FormatRanges(l.Owned)))
				progress := e.followEvents(ctx, "the clusters of launcher "+l.ID+" to move", clusterSetEvents(l.Owned))
				err := control.Drain(ctx, n, control.At(l.Addr))
				progress.stop()
				if err != nil {
					return nil, fmt.Errorf("launcher %s: %w", l.ID, err)
				}
			} else if err := control.Shutdown(ctx, n, control.At(l.Addr)); err != nil {
				return nil, fmt.Errorf("launcher %s: %w", l.ID, err)
			}
			fmt.Fprintf(e.errOut(), "launcher %s is stopping (its clusters: %s)\n", l.ID, orDash(shardmap.FormatRanges(l.Owned)))
			stopped++
		}
		if stopped == 0 {
			return nil, fmt.Errorf("no live launcher %q (running: %s)", only, launcherIDs(ls))
		}
		return control.ShutdownReply{OK: true}, nil
	})
}

var cmdEval = withEnv(func(c *ucli.Context, e *env) error {
	expr := strings.Join(c.Args().Slice(), " ")
	return e.withNode(c.Context, e.timeout, func(ctx context.Context, n *redisipc.Node) error {
		g, err := n.Eval(ctx, c.String("target"), expr)
		if err != nil {
			return err
		}
		nameCopies(g, e.copyLabels(ctx))
		if err := e.printGathered(g); err != nil {
			return err
		}
		return noneAnswered(g)
	})
})

// noneAnswered fails a gather in which no target gave a result (every
// answer an error, or no answer at all), so that scripts see a non-zero
// exit status; the answers were printed already.
func noneAnswered(g *redisipc.Gathered) error {
	for _, a := range g.Answers {
		if a.Err == nil {
			return nil
		}
	}
	return fmt.Errorf("no target answered with a result (%d errors, %d silent)", len(g.Answers), len(g.Missing))
}

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
		pong, err := n.Ping(ctx, to)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.out, "%s answered in %s: instance %s\n", to, time.Since(start).Round(time.Microsecond), pong.Instance)
		return nil
	})
})

// ownerOf returns where to send a control request about lease name: the
// launcher holding it when several run the bot, the one launcher (no
// option) otherwise.
func (e *env) ownerOf(ctx context.Context, name string) ([]control.CallOption, error) {
	ls, err := leases.Launchers(ctx, e.rdb, e.ks)
	if err != nil || len(ls) == 0 {
		return nil, err
	}
	held, err := leases.Read(ctx, e.rdb, e.ks, []string{name})
	if err != nil {
		return nil, err
	}
	if !held[0].Held() {
		return nil, fmt.Errorf("%s has no launcher: none holds its lease, so its shards are offline (launchers: %s)", name, launcherIDs(ls))
	}
	for _, l := range ls {
		if l.ID == held[0].Owner {
			return []control.CallOption{control.At(l.Addr)}, nil
		}
	}
	return nil, fmt.Errorf("%s is owned by launcher %s, which has no live record", name, held[0].Owner)
}

func launcherIDs(ls []leases.Launcher) string {
	ids := make([]string, len(ls))
	for i, l := range ls {
		ids[i] = l.ID
	}
	return strings.Join(ids, ", ")
}
