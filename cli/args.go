package cli

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/lifecycle"
	"github.com/megane-go/megane/redisipc"
)

// ErrUsage wraps every error about the command line itself: a missing or
// extra argument, a number out of range, an id that is not one. Such errors
// are reported before Redis is contacted.
var ErrUsage = errors.New("bad usage")

// Ranges of the numeric flags and arguments.
const (
	// maxEvents is what the events stream keeps: asking for more shows no more.
	maxEvents = lifecycle.MaxLen
	// maxDeadLetters is what the dead-letter stream keeps by default.
	maxDeadLetters = 10_000
	// maxClusterID matches the launcher's limit of 1024 clusters.
	maxClusterID = 1023
	// maxShardsArg matches the launcher's limit of 65536 shards.
	maxShardsArg = 65536
	minTimeout   = time.Millisecond // the usage text spells out these two
	maxTimeout   = 24 * time.Hour
)

func usageErr(format string, args ...any) error {
	return fmt.Errorf("%w: %s", ErrUsage, fmt.Sprintf(format, args...))
}

// checkTimeout is the app's Before: --timeout bounds every request, so zero
// or a negative value would fail each one with a puzzling "deadline
// exceeded".
func checkTimeout(c *ucli.Context) error {
	if d := c.Duration("timeout"); d < minTimeout || d > maxTimeout {
		return usageErr("--timeout=%s is outside 1ms..24h", d)
	}
	return nil
}

// checkCount returns a command's Before that bounds its --count flag.
func checkCount(lo, hi int) ucli.BeforeFunc {
	return func(c *ucli.Context) error {
		if n := c.Int("count"); n < lo || n > hi {
			return usageErr("--count=%d is outside %d..%d", n, lo, hi)
		}
		return nil
	}
}

// checkArgs returns a command's Before that requires between lo and hi
// arguments.
func checkArgs(lo, hi int, usage string) ucli.BeforeFunc {
	return func(c *ucli.Context) error {
		if c.NArg() < lo || c.NArg() > hi {
			return usageErr("want megane-cli %s", usage)
		}
		return nil
	}
}

// parseClusterID reads a cluster id: a decimal integer 0..maxClusterID.
func parseClusterID(s string) (int, error) {
	id, err := strconv.Atoi(s)
	if err != nil || id < 0 || id > maxClusterID {
		return 0, usageErr("%s", badClusterID(s))
	}
	return id, nil
}

func badClusterID(s string) string {
	return fmt.Sprintf("cluster id %q is not an integer in 0..%d", s, maxClusterID)
}

// checkNodeArg rejects a node address or broadcast target whose cluster id
// is not one ("cluster:-1"); redisipc judges the rest of its shape.
func checkNodeArg(what, s string) error {
	id, ok := strings.CutPrefix(s, redisipc.KindCluster+":")
	if !ok {
		return nil
	}
	if _, err := parseClusterID(id); err != nil {
		return usageErr("%s %q: %s", what, s, badClusterID(id))
	}
	return nil
}

// parseSnowflake reads a Discord id: a positive decimal integer that fits
// 64 bits.
func parseSnowflake(s string) (uint64, error) {
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil || id == 0 {
		return 0, usageErr("%q is not a Discord id (a positive integer of at most 20 digits)", s)
	}
	return id, nil
}

// parseDelta reads the delta of store incr.
func parseDelta(s string) (int64, error) {
	d, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, usageErr("delta %q is not an integer in %d..%d", s, int64(-1<<63), int64(1<<63-1))
	}
	return d, nil
}

// noArgs returns a command's Before that refuses arguments: a stray one
// (events 5, meaning --count 5) would otherwise be ignored.
func noArgs(usage string) ucli.BeforeFunc { return checkArgs(0, 0, usage) }

// all runs checks in order and returns the first error.
func all(checks ...ucli.BeforeFunc) ucli.BeforeFunc {
	return func(c *ucli.Context) error {
		for _, check := range checks {
			if err := check(c); err != nil {
				return err
			}
		}
		return nil
	}
}

// maxServiceCopy matches the launcher's limit of 256 copies a service.
const maxServiceCopy = 255

// checkRestartService is restart-service's Before: one service name that
// can be an address, and --copy either -1 (every copy) or a copy number.
func checkRestartService(c *ucli.Context) error {
	if err := checkArgs(1, 1, "restart-service [--copy n] <service name>")(c); err != nil {
		return err
	}
	if err := keyspace.CheckName(c.Args().First()); err != nil {
		return usageErr("service name: %v", err)
	}
	if n := c.Int("copy"); n < -1 || n > maxServiceCopy {
		return usageErr("--copy=%d is outside 0..%d (or -1 for every copy)", n, maxServiceCopy)
	}
	return nil
}
