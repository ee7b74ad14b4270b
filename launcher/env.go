package launcher

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"
)

// Environment variables. The first group is for users (see Config); the
// second is set by the launcher for its children, and lets an operator start
// a cluster by hand on another host.
const (
	envToken         = "DISCORD_TOKEN"
	envRedisURL      = "REDIS_URL"
	envNamespace     = "MEGANE_NAMESPACE"
	envClusters      = "MEGANE_CLUSTERS"
	envTotalClusters = "MEGANE_TOTAL_CLUSTERS"
	envBinary        = "MEGANE_BINARY"
	envLeaseTTL      = "MEGANE_LEASE_TTL"
	// envLeaseToken is the fencing token of the lease a child runs under
	// (launcher to child only).
	envLeaseToken           = "MEGANE_LEASE_TOKEN"
	envShards               = "MEGANE_SHARDS"
	envGuildsPerShard       = "MEGANE_GUILDS_PER_SHARD"
	envLargeBotSharding     = "MEGANE_LARGE_BOT_SHARDING"
	envMaxConcurrency       = "MEGANE_MAX_CONCURRENCY"
	envIdentifyReserve      = "MEGANE_IDENTIFY_RESERVE"
	envIdentifyWindow       = "MEGANE_IDENTIFY_WINDOW"
	envRESTURL              = "MEGANE_DISCORD_REST_URL"
	envGatewayURL           = "MEGANE_DISCORD_GATEWAY_URL"
	envHeartbeatInterval    = "MEGANE_HEARTBEAT_INTERVAL"
	envReadyTimeout         = "MEGANE_READY_TIMEOUT"
	envReadyTimeoutPerShard = "MEGANE_READY_TIMEOUT_PER_SHARD"
	envRestartBackoff       = "MEGANE_RESTART_BACKOFF"
	envMaxRestartBackoff    = "MEGANE_RESTART_BACKOFF_MAX"
	envMaxRestarts          = "MEGANE_MAX_RESTARTS"
	envRestartWindow        = "MEGANE_RESTART_WINDOW"
	envReshardCheckInterval = "MEGANE_RESHARD_CHECK_INTERVAL"
	envReshardGrowth        = "MEGANE_RESHARD_GROWTH"
	envShutdownTimeout      = "MEGANE_SHUTDOWN_TIMEOUT"
	envStatsInterval        = "MEGANE_STATS_INTERVAL"
	envStatusWebhook        = "MEGANE_STATUS_WEBHOOK"
	envHTTPAddr             = "MEGANE_HTTP_ADDR"
	envDemo                 = "MEGANE_DEMO"
	envDemoGuilds           = "MEGANE_DEMO_GUILDS"
	envDemoPingInterval     = "MEGANE_DEMO_PING_INTERVAL"
	envLogLevel             = "MEGANE_LOG_LEVEL"

	envRole          = "MEGANE_ROLE"
	envClusterID     = "MEGANE_CLUSTER_ID"
	envClusterShards = "MEGANE_CLUSTER_SHARDS"
	envService       = "MEGANE_SERVICE"
	envServiceCopy   = "MEGANE_SERVICE_COPY"
	envReadyFD       = "MEGANE_READY_FD"
	envParentPID     = "MEGANE_PARENT_PID"
	// envStandby marks a re-shard's new-generation cluster (any non-empty
	// value): it runs as cluster.Options.Standby in the staging keyspace.
	envStandby = "MEGANE_STANDBY"
)

// Role is the part a process plays, chosen by MEGANE_ROLE.
type Role string

// Roles. An unset MEGANE_ROLE means RoleLauncher.
const (
	RoleLauncher Role = "launcher"
	RoleCluster  Role = "cluster"
	RoleService  Role = "service"
)

func parseRole(v string) (Role, error) {
	switch Role(v) {
	case "", RoleLauncher:
		return RoleLauncher, nil
	case RoleCluster, RoleService:
		return Role(v), nil
	}
	return "", fmt.Errorf("%s=%q: want %q, %q or %q", envRole, v, RoleLauncher, RoleCluster, RoleService)
}

// envReader applies environment overrides and collects parse errors, so a
// user sees every bad variable at once.
type envReader struct {
	lookup func(string) (string, bool)
	errs   []error
}

func (r *envReader) get(name string) (string, bool) {
	v, ok := r.lookup(name)
	v = strings.TrimSpace(v)
	// docker compose passes "${VAR:-}" as an empty string: treat it as unset.
	return v, ok && v != ""
}

func (r *envReader) str(name string, dst *string) {
	if v, ok := r.get(name); ok {
		*dst = v
	}
}

func (r *envReader) int(name string, dst *int) {
	if v, ok := r.get(name); ok {
		n, err := strconv.Atoi(v)
		if err != nil {
			r.errs = append(r.errs, fmt.Errorf("%s=%q is not an integer", name, v))
			return
		}
		*dst = n
	}
}

func (r *envReader) bool(name string, dst *bool) {
	if v, ok := r.get(name); ok {
		b, err := strconv.ParseBool(v)
		if err != nil {
			r.errs = append(r.errs, fmt.Errorf("%s=%q is not a boolean (true/false)", name, v))
			return
		}
		*dst = b
	}
}

func (r *envReader) dur(name string, dst *time.Duration) {
	if v, ok := r.get(name); ok {
		d, err := time.ParseDuration(v)
		if err != nil {
			r.errs = append(r.errs, fmt.Errorf("%s=%q is not a duration (like 500ms or 5s)", name, v))
			return
		}
		*dst = d
	}
}

func (r *envReader) level(name string, dst *slog.Level) {
	if v, ok := r.get(name); ok {
		var l slog.Level
		if err := l.UnmarshalText([]byte(v)); err != nil {
			r.errs = append(r.errs, fmt.Errorf("%s=%q is not a log level (debug, info, warn, error)", name, v))
			return
		}
		*dst = l
	}
}

// applyEnv overrides c's fields from the environment.
func (c *Config) applyEnv(r *envReader) {
	r.str(envToken, &c.Token)
	r.str(envRedisURL, &c.RedisURL)
	r.str(envNamespace, &c.Namespace)
	r.int(envClusters, &c.Clusters)
	r.int(envTotalClusters, &c.TotalClusters)
	r.str(envBinary, &c.Binary)
	r.dur(envLeaseTTL, &c.LeaseTTL)
	r.int(envShards, &c.Shards)
	r.int(envGuildsPerShard, &c.GuildsPerShard)
	r.bool(envLargeBotSharding, &c.LargeBotSharding)
	r.int(envMaxConcurrency, &c.MaxConcurrency)
	r.int(envIdentifyReserve, &c.IdentifyReserve)
	r.dur(envIdentifyWindow, &c.IdentifyWindow)
	r.str(envRESTURL, &c.RESTURL)
	r.str(envGatewayURL, &c.GatewayURL)
	r.dur(envHeartbeatInterval, &c.HeartbeatInterval)
	r.dur(envReadyTimeout, &c.ReadyTimeout)
	r.dur(envReadyTimeoutPerShard, &c.ReadyTimeoutPerShard)
	r.dur(envRestartBackoff, &c.RestartBackoff)
	r.dur(envMaxRestartBackoff, &c.MaxRestartBackoff)
	r.int(envMaxRestarts, &c.MaxRestarts)
	r.dur(envRestartWindow, &c.RestartWindow)
	r.dur(envReshardCheckInterval, &c.ReshardCheckInterval)
	r.int(envReshardGrowth, &c.ReshardGrowth)
	r.dur(envShutdownTimeout, &c.ShutdownTimeout)
	r.dur(envStatsInterval, &c.StatsInterval)
	r.str(envStatusWebhook, &c.StatusWebhook)
	r.str(envHTTPAddr, &c.HTTPAddr)
	demo := !c.DisableDemo
	r.bool(envDemo, &demo)
	c.DisableDemo = !demo
	r.int(envDemoGuilds, &c.DemoGuilds)
	r.dur(envDemoPingInterval, &c.DemoPingInterval)
	r.level(envLogLevel, &c.logLevel)
	c.applyEvalEnv(r)
}
