// Package launcher runs one Discord bot as many processes from one binary,
// the way Megane's isMaster pattern does: main calls Run, and Run looks at
// MEGANE_ROLE. In the launcher process (no role) it plans the shards,
// spawns cluster and service processes by re-executing the binary with a
// role in the environment, and supervises them; in a child it runs
// cluster.Run or services.Run with what the launcher decided.
//
//	func main() {
//		err := launcher.Run(context.Background(), launcher.Config{
//			Worker:   myBot{},                                  // cluster.Worker
//			Services: map[string]launcher.ServiceSpec{"stats": {Worker: stats{}}},
//		})
//		if err != nil {
//			log.Fatal(err)
//		}
//	}
//
// # Start
//
// Configuration comes from Config, overridden by the environment (table
// below); every problem is reported at once, before anything starts. The
// launcher then asks Discord (GET /gateway/bot, through Config.RESTURL, which
// may be a rate-limit proxy) for the recommended shard count and
// session_start_limit, writes the gateway info (identify.SaveGatewayInfo,
// with the effective max_concurrency) and the shard map to Redis, and checks
// that the daily session budget can pay for the shards that have no saved
// session (identify.CheckBudget); a start that would exhaust it is refused.
// Clusters default to one per CPU, capped by the shard count, each with a
// contiguous range of shards.
//
// # Several launchers
//
// With Config.TotalClusters (MEGANE_TOTAL_CLUSTERS) several launchers, on
// one host or many, run one bot on the same Redis and namespace. The first
// writes the plan under a lock and a contradicting one refuses
// (ErrPlanConflict); each claims free clusters up to Config.Clusters, and
// every service copy nobody runs, through leases (package leases) renewed
// every third of Config.LeaseTTL, and takes over the clusters of a launcher
// that died: the new processes RESUME the saved sessions. A child that
// cannot confirm its lease stops its shards, dials no gateway socket, and
// exits with ExitLeaseLost; its session writes carry the lease's fencing
// token, which a newer owner's fence refuses (sessions.ErrFenced). Each
// launcher serves the control ops at control.AddrOf(its id).
//
// Without DISCORD_TOKEN the launcher runs in demo mode: it starts the
// in-repo fake Discord (discordtest) with a generated world, and without
// REDIS_URL an embedded Redis, prints how to look inside with redis-cli, and
// has a user say "!ping" every few seconds.
//
// # Supervision
//
// Each child gets a pipe on fd 3 (MEGANE_READY_FD) on which it reports
// ready once all its shards are READY or RESUMED (cluster.Options.OnReady,
// services.Options.OnReady). The launcher publishes lifecycle events to
// Redis (keyspace.Events) and to Config.OnEvent, and:
//
//   - respawns a child that exits, after a backoff that doubles from
//     RestartBackoff to MaxRestartBackoff, and gives up (ClusterGaveUp, an
//     error log) after MaxRestarts crashes within RestartWindow;
//   - kills and respawns a cluster whose heartbeat key expired, or that is
//     not ready within its ready timeout, which grows with its own shard
//     count and the identifies queued before it, never with the bot's;
//   - restarts one cluster on request (RestartCluster, RollingRestart, or
//     the IPC ops of the node "launcher", defined in package control):
//     SIGTERM, the cluster saves its sessions and exits, the new process
//     RESUMEs every shard; and a
//     service's copies one at a time (RestartService, OpRestartService,
//     megane-cli restart-service), reviving copies it gave up on;
//   - on SIGINT/SIGTERM, stops every child the same way and waits up to
//     ShutdownTimeout before killing it (a second signal kills at once).
//     Children run in their own process groups and get SIGTERM from the
//     kernel if the launcher dies (Linux), so none is left behind.
//
// Redis is the bus, not the judge. Every HeartbeatInterval the launcher
// writes its own hash to Redis; heartbeats are judged only once those
// writes have gone through for longer than the heartbeat TTL, so a Redis
// that refuses writes, is unreachable or lost every key kills nobody. A
// child that exits while Redis fails (a child stopped by Redis exits with
// ExitRedisUnavailable) is not counted as a crash and is respawned, in the
// state StateWaitingRedis meanwhile, once Redis works. After each probe the
// launcher rewrites the gateway hash, the shard map and the cluster hashes'
// supervision fields if Redis lost them; clusters rewrite their own records
// and rebuild a lost cache projection (see package cluster).
//
// # Code in the launcher process
//
// What Megane ran in its master (aggregating statistics, reacting to
// events, calling clusters and services) goes in Config.OnStart. It gets
// the same handles a service has (Handles: the launcher's IPC node, the
// store, the cache reader, the cross-cluster fetch, the launcher's
// statistics reporter) and Handles.BotStats, every process's statistics
// typed and grouped by role. Launcher.Handles returns the same handles
// while Run runs. Like the context of a cluster's or a service's Launch,
// OnStart's context lives until the process stops. Config.OnEvent
// delivers the lifecycle events.
//
// # Environment
//
// An empty variable counts as unset.
//
//	variable                        default                      meaning
//	DISCORD_TOKEN                   (demo mode)                  bot token
//	REDIS_URL                       (embedded Redis)             redis://, rediss://, redis+cluster://, redis+sentinel://
//	MEGANE_NAMESPACE                application id               keys start with megane:<namespace>:
//	MEGANE_CLUSTERS                 NumCPU, ≤ shards             cluster processes
//	MEGANE_SHARDS                   Discord's recommendation     total shard count
//	MEGANE_GUILDS_PER_SHARD         0 (as recommended)           scale the recommendation (1000 / value)
//	MEGANE_LARGE_BOT_SHARDING       false                        round shards up to a multiple of max(16, max_concurrency)
//	MEGANE_MAX_CONCURRENCY          Discord's                    identify buckets; may only lower Discord's value
//	MEGANE_IDENTIFY_RESERVE         0                            session starts never spent
//	MEGANE_IDENTIFY_WINDOW          5s                           bucket spacing (fakes only)
//	MEGANE_DISCORD_REST_URL         https://discord.com/api/v10  REST base, e.g. a nirn-proxy
//	MEGANE_DISCORD_GATEWAY_URL      from GET /gateway/bot        gateway URL (no query)
//	MEGANE_HEARTBEAT_INTERVAL       2s                           cluster heartbeat (TTL 3×) and check interval
//	MEGANE_READY_TIMEOUT            60s                          base ready timeout of a cluster
//	MEGANE_READY_TIMEOUT_PER_SHARD  15s                          added per shard of the cluster
//	MEGANE_RESTART_BACKOFF          1s                           first respawn delay (doubles)
//	MEGANE_RESTART_BACKOFF_MAX      30s                          respawn delay cap
//	MEGANE_MAX_RESTARTS             5                            crashes tolerated per window
//	MEGANE_RESTART_WINDOW           10m                          crash counting window
//	MEGANE_SHUTDOWN_TIMEOUT         20s                          SIGTERM to SIGKILL
//	MEGANE_DEMO                     true                         false: a missing token is an error
//	MEGANE_DEMO_GUILDS              24                           guilds of the demo world
//	MEGANE_DEMO_PING_INTERVAL       3s                           demo "!ping" interval (negative: none)
//	MEGANE_LOG_LEVEL                info                         debug, info, warn, error (default logger)
//
// The launcher sets these in its children, so a cluster can also be started
// by hand on another host: MEGANE_ROLE (cluster or service),
// MEGANE_CLUSTER_ID, MEGANE_CLUSTER_SHARDS ("0-3,8"), MEGANE_SERVICE,
// MEGANE_SERVICE_COPY, MEGANE_READY_FD and MEGANE_PARENT_PID, along with
// the resolved DISCORD_TOKEN, REDIS_URL, MEGANE_NAMESPACE, MEGANE_SHARDS,
// MEGANE_MAX_CONCURRENCY and URLs.
//
// When Config.Redis is set instead of a URL, every child uses it too (they
// run the same main and build the same client); when a child could not
// build it the same way, set REDIS_URL instead.
package launcher
