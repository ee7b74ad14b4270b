package cli

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/redis/go-redis/v9"
	ucli "github.com/urfave/cli/v2"

	"github.com/megane-go/megane/inspect"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/redisconn"
	"github.com/megane-go/megane/redisipc"
)

// env is what every command needs: a Redis client and a namespace.
type env struct {
	rdb     redis.UniversalClient
	ks      keyspace.Keyspace
	json    bool
	timeout time.Duration
	out     io.Writer
	errw    io.Writer // progress lines, so stdout stays the command's answer
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
	return &env{rdb: rdb, ks: ks, json: c.Bool("json"), timeout: c.Duration("timeout"), out: c.App.Writer, errw: c.App.ErrWriter}, nil
}

// errOut is where progress lines go.
func (e *env) errOut() io.Writer {
	if e.errw == nil {
		return io.Discard
	}
	return e.errw
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
