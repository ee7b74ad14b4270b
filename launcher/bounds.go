package launcher

import (
	"fmt"
	"strings"
	"time"
)

// The ranges of Config's counts and durations. A value outside its range is
// a config error whether it comes from the struct or the environment: a
// 1ns heartbeat or a hundred-million-guild demo world takes the machine
// down instead of running the bot. Zero always means "the default" (or, for
// IdentifyReserve, none). The Config field docs and the README
// configuration table repeat these ranges; TestREADMEListsConfigRanges
// keeps the README in step.
const (
	maxClusters       = 1024
	maxShards         = 65536
	minGuildsPerShard = 100
	// maxGuildsPerShard is Discord's limit: a shard with more guilds is
	// closed with 4011 (sharding required).
	maxGuildsPerShard   = 2500
	maxMaxConcurrency   = 1024
	maxIdentifyReserve  = 100_000
	maxMaxRestarts      = 1000
	maxServiceCopies    = 256
	minServiceReadyTime = time.Second
	maxServiceReadyTime = time.Hour
	maxEvalNodes        = 100_000
	maxEvalConcurrent   = 64
	// An eval's byte budget: below 1 MiB hardly any expression runs; above
	// 4 GiB one eval could take the machine.
	minEvalMemory = 1 << 20
	maxEvalMemory = 4 << 30
)

// intField is one integer Config field and its range.
type intField struct {
	field, env string
	v          int
	min, max   int
	// zeroChecked is set for fields whose zero is a value, not the default.
	zeroChecked bool
}

// check reports a value outside the range; zero is the default, and
// always accepted unless zeroChecked.
func (f intField) check() error {
	if (f.v == 0 && !f.zeroChecked) || (f.v >= f.min && f.v <= f.max) {
		return nil
	}
	return fmt.Errorf("%s=%d is outside %d..%d%s", fieldName(f.field, f.env), f.v, f.min, f.max, fieldSuffix(f.field, f.env))
}

// durationField is one duration Config field and its range.
type durationField struct {
	field, env string
	v          time.Duration
	min, max   time.Duration
}

// check reports a value outside the range; zero is the default.
func (f durationField) check() error {
	if f.v == 0 || (f.v >= f.min && f.v <= f.max) {
		return nil
	}
	return fmt.Errorf("%s=%s is outside %s..%s%s", fieldName(f.field, f.env), f.v, shortDuration(f.min), shortDuration(f.max), fieldSuffix(f.field, f.env))
}

// fieldName names a field by its environment variable, the way most users
// set it; fieldSuffix adds its Config field for those who set the struct.
func fieldName(field, env string) string {
	if env == "" {
		return field
	}
	return env
}

func fieldSuffix(field, env string) string {
	if env == "" {
		return ""
	}
	return " (Config." + field + ")"
}

// shortDuration writes 1m instead of 1m0s, as the docs do.
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func (c *Config) intFields() []intField {
	return []intField{
		{"Clusters", envClusters, c.Clusters, 1, maxClusters, false},
		{"TotalClusters", envTotalClusters, c.TotalClusters, 1, maxClusters, false},
		{"Shards", envShards, c.Shards, 1, maxShards, false},
		{"GuildsPerShard", envGuildsPerShard, c.GuildsPerShard, minGuildsPerShard, maxGuildsPerShard, false},
		{"MaxConcurrency", envMaxConcurrency, c.MaxConcurrency, 1, maxMaxConcurrency, false},
		{"IdentifyReserve", envIdentifyReserve, c.IdentifyReserve, 0, maxIdentifyReserve, true},
		{"MaxRestarts", envMaxRestarts, c.MaxRestarts, 1, maxMaxRestarts, false},
		{"ReshardGrowth", envReshardGrowth, c.ReshardGrowth, 1, 1000, false},
		{"DemoGuilds", envDemoGuilds, c.DemoGuilds, 1, MaxDemoGuilds, false},
		{"Eval.MaxNodes", envEvalMaxNodes, c.Eval.MaxNodes, 10, maxEvalNodes, false},
		{"Eval.MaxConcurrent", envEvalMaxConcurrent, c.Eval.MaxConcurrent, 1, maxEvalConcurrent, false},
	}
}

func (c *Config) durationFields() []durationField {
	fields := []durationField{
		{"IdentifyWindow", envIdentifyWindow, c.IdentifyWindow, 10 * time.Millisecond, time.Minute},
		{"HeartbeatInterval", envHeartbeatInterval, c.HeartbeatInterval, 100 * time.Millisecond, time.Minute},
		{"LeaseTTL", envLeaseTTL, c.LeaseTTL, time.Second, 5 * time.Minute},
		{"ReadyTimeout", envReadyTimeout, c.ReadyTimeout, time.Second, time.Hour},
		{"ReadyTimeoutPerShard", envReadyTimeoutPerShard, c.ReadyTimeoutPerShard, 100 * time.Millisecond, 10 * time.Minute},
		{"RestartBackoff", envRestartBackoff, c.RestartBackoff, 10 * time.Millisecond, 5 * time.Minute},
		{"MaxRestartBackoff", envMaxRestartBackoff, c.MaxRestartBackoff, 10 * time.Millisecond, time.Hour},
		{"RestartWindow", envRestartWindow, c.RestartWindow, time.Second, 24 * time.Hour},
		{"ReshardCheckInterval", envReshardCheckInterval, c.ReshardCheckInterval, time.Second, 24 * time.Hour},
		{"ShutdownTimeout", envShutdownTimeout, c.ShutdownTimeout, time.Second, 10 * time.Minute},
		{"StatsInterval", envStatsInterval, c.StatsInterval, time.Second, time.Hour},
		{"Eval.Timeout", envEvalTimeout, c.Eval.Timeout, 10 * time.Millisecond, 5 * time.Minute},
	}
	// A negative ping interval turns the pings off.
	if c.DemoPingInterval >= 0 {
		fields = append(fields, durationField{"DemoPingInterval", envDemoPingInterval, c.DemoPingInterval, 100 * time.Millisecond, time.Hour})
	}
	return fields
}
