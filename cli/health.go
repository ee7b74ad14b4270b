package cli

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"

	ucli "github.com/urfave/cli/v2"
)

// defaultHealthURL is the launcher's /healthz at its default address
// (monitor.DefaultAddr; the CLI does not link the monitor package).
const defaultHealthURL = "http://127.0.0.1:9190/healthz"

// healthCommand asks a launcher's HTTP endpoint whether it is healthy (or,
// with /readyz, ready), without Redis: it is the container healthcheck of
// docker-compose.yml, whose image has no shell, curl or wget.
func healthCommand() *ucli.Command {
	return &ucli.Command{
		Name:  "health",
		Usage: "check a launcher's /healthz (or --url …/readyz); exits 1 unless it answers 200",
		Flags: []ucli.Flag{
			&ucli.StringFlag{Name: "url", Value: defaultHealthURL, Usage: "the endpoint to check"},
		},
		Before: all(noArgs("health [--url http://127.0.0.1:9190/healthz]"), func(c *ucli.Context) error {
			u := c.String("url")
			if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
				return usageErr("health: --url must be an http(s) URL, got %q", u)
			}
			return nil
		}),
		Action: cmdHealth,
	}
}

func cmdHealth(c *ucli.Context) error {
	ctx, cancel := context.WithTimeout(c.Context, c.Duration("timeout"))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.String("url"), nil)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return fmt.Errorf("health: %w", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	fmt.Fprint(c.App.Writer, strings.TrimSpace(string(body))+"\n")
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("health: %s answered %s", c.String("url"), resp.Status)
	}
	return nil
}
