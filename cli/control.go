package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/megane-go/megane/control"
	"github.com/megane-go/megane/redisipc"
)

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
		out, err := n.Call(ctx, to, redisipc.OpPing, nil)
		if err != nil {
			return err
		}
		fmt.Fprintf(e.out, "%s answered in %s: %s\n", to, time.Since(start).Round(time.Microsecond), out)
		return nil
	})
})
