package launcher

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/megane-go/megane/redisipc"
)

// Environment variables of the eval settings (Config.Eval, EvalLauncher,
// DisableEvalClusters, DisableEvalServices).
const (
	envEval              = "MEGANE_EVAL"
	envEvalLauncher      = "MEGANE_EVAL_LAUNCHER"
	envEvalClusters      = "MEGANE_EVAL_CLUSTERS"
	envEvalServices      = "MEGANE_EVAL_SERVICES"
	envEvalTimeout       = "MEGANE_EVAL_TIMEOUT"
	envEvalMaxMemory     = "MEGANE_EVAL_MAX_MEMORY"
	envEvalMaxNodes      = "MEGANE_EVAL_MAX_NODES"
	envEvalMaxConcurrent = "MEGANE_EVAL_MAX_CONCURRENT"
)

// applyEvalEnv overrides the eval settings from the environment.
func (c *Config) applyEvalEnv(r *envReader) {
	on := !c.Eval.Disabled
	r.bool(envEval, &on)
	c.Eval.Disabled = !on
	r.bool(envEvalLauncher, &c.EvalLauncher)
	clusters, services := !c.DisableEvalClusters, !c.DisableEvalServices
	r.bool(envEvalClusters, &clusters)
	r.bool(envEvalServices, &services)
	c.DisableEvalClusters, c.DisableEvalServices = !clusters, !services
	r.dur(envEvalTimeout, &c.Eval.Timeout)
	if v, ok := r.get(envEvalMaxMemory); ok {
		n, err := parseBytes(v)
		if err != nil {
			r.errs = append(r.errs, fmt.Errorf("%s=%q is not a size in bytes (like 67108864 or 64MiB)", envEvalMaxMemory, v))
		} else {
			c.Eval.MaxMemory = n
		}
	}
	r.int(envEvalMaxNodes, &c.Eval.MaxNodes)
	r.int(envEvalMaxConcurrent, &c.Eval.MaxConcurrent)
}

// validateEval reports the eval settings' problems through bad.
func (c *Config) validateEval(bad func(format string, args ...any)) {
	// The other eval limits are checked with every count and duration
	// (intFields, durationFields).
	if m := c.Eval.MaxMemory; m != 0 && (m < minEvalMemory || m > maxEvalMemory) {
		bad("%s=%d is outside 1MiB..4GiB (Config.Eval.MaxMemory)", envEvalMaxMemory, m)
	}
}

// evalLimits returns the eval limits of a process in role.
func (c *Config) evalLimits(role Role) redisipc.EvalLimits {
	lim := c.Eval
	switch role {
	case RoleLauncher:
		lim.Disabled = lim.Disabled || !c.EvalLauncher
	case RoleCluster:
		lim.Disabled = lim.Disabled || c.DisableEvalClusters
	case RoleService:
		lim.Disabled = lim.Disabled || c.DisableEvalServices
	}
	return lim
}

// parseBytes reads a byte count, plain or with a KiB, MiB or GiB suffix
// (KB, MB and GB mean the same).
func parseBytes(v string) (int64, error) {
	s := strings.TrimSpace(v)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}} {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("bad size %q", v)
	}
	return n * mult, nil
}
