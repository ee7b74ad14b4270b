package cli

import (
	"fmt"
	"time"

	ucli "github.com/urfave/cli/v2"
)

// watchStats prints the statistics every --interval until the command is
// interrupted (Ctrl-C), each print headed by its time; with --json, one
// JSON document per print.
func watchStats(c *ucli.Context, e *env) error {
	every := c.Duration("interval")
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if !e.json {
			fmt.Fprintf(e.out, "--- %s (every %s; Ctrl-C stops)\n", time.Now().Format("15:04:05"), every)
		}
		if err := printStats(c, e); err != nil {
			if c.Context.Err() != nil {
				return nil
			}
			return err
		}
		select {
		case <-c.Context.Done():
			return nil
		case <-t.C:
		}
		if !e.json {
			fmt.Fprintln(e.out)
		}
	}
}

func checkWatchInterval(c *ucli.Context) error {
	if d := c.Duration("interval"); d < 100*time.Millisecond || d > time.Hour {
		return usageErr("--interval %s is outside 100ms..1h", d)
	}
	return nil
}

// structured reports whether a statistic is a map or a list (gateway
// events by type, IPC calls): the stats table leaves those to --json.
func structured(v any) bool {
	switch v.(type) {
	case map[string]any, []any:
		return true
	}
	return false
}
