package launcher

import (
	"fmt"
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
