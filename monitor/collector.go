package monitor

import (
	"context"
	"encoding/json"
	"log/slog"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/megane-go/megane/redisipc"
	"github.com/megane-go/megane/stats"
)

// The exported metrics. Labels stay bounded: shard, cluster, process
// (cluster:<id>, service:<name>:<copy>, launcher), op, status, type and
// reason take few values each; no guild, user or channel id is ever a
// label. Counters built from published statistics restart from zero when
// their process restarts, as Prometheus counters do.
var (
	descRedisUp = prometheus.NewDesc("megane_redis_up",
		"1 when the last scrape could read the bot's records from Redis, else 0 (and no other megane_ metric is exported).", nil, nil)
	descShardCount = prometheus.NewDesc("megane_shard_count",
		"The bot's shard count (the shard map's).", nil, nil)
	descShards = prometheus.NewDesc("megane_shards",
		"Shards per status: ready, resuming, connecting (identifying), disconnected, stopped, unknown.", []string{"status"}, nil)
	descShardStatus = prometheus.NewDesc("megane_shard_status",
		"1 for the shard's current status (one series per shard).", []string{"shard", "cluster", "status"}, nil)
	descShardLatency = prometheus.NewDesc("megane_shard_latency_seconds",
		"The shard's last gateway heartbeat round trip.", []string{"shard", "cluster"}, nil)
	descShardGuilds = prometheus.NewDesc("megane_shard_guilds",
		"Guilds of the shard, as its cluster last counted them.", []string{"shard", "cluster"}, nil)
	descClusters = prometheus.NewDesc("megane_clusters",
		"Clusters per status of their state hash (starting, ready, stopping, stopped, failed, unknown).", []string{"status"}, nil)
	descClusterUp = prometheus.NewDesc("megane_cluster_up",
		"1 while the cluster's heartbeat key is present.", []string{"cluster"}, nil)
	descClusterRestarts = prometheus.NewDesc("megane_cluster_restarts_total",
		"Respawns of the cluster counted by its supervising launcher (requested or after a crash).", []string{"cluster"}, nil)
	descClusterExits = prometheus.NewDesc("megane_cluster_exits_total",
		"Cluster process exits by reason (crashed, unresponsive, requested, shutdown, lease_lost), counted from the lifecycle events stream.", []string{"cluster", "reason"}, nil)
	descLifecycle = prometheus.NewDesc("megane_lifecycle_events_total",
		"Lifecycle events by type, counted from the events stream.", []string{"type"}, nil)
	descGatewayEvents = prometheus.NewDesc("megane_gateway_events_total",
		"Gateway dispatches the cluster received, by event type.", []string{"cluster", "type"}, nil)
	descSessionTotal = prometheus.NewDesc("megane_session_starts_limit",
		"Discord's daily session-start limit (session_start_limit.total).", nil, nil)
	descSessionRemaining = prometheus.NewDesc("megane_session_starts_remaining",
		"Session starts left until the reset (session_start_limit.remaining, decremented per IDENTIFY).", nil, nil)
	descSessionReset = prometheus.NewDesc("megane_session_starts_reset_timestamp_seconds",
		"When the session-start budget resets, as a unix time.", nil, nil)
	descMaxConcurrency = prometheus.NewDesc("megane_identify_max_concurrency",
		"The effective identify max_concurrency (buckets).", nil, nil)
	descIdentifyWaits = prometheus.NewDesc("megane_identify_waits_total",
		"Identify buckets the cluster took (one per IDENTIFY).", []string{"cluster"}, nil)
	descIdentifyWaitSeconds = prometheus.NewDesc("megane_identify_wait_seconds_total",
		"Time the cluster's shards waited for an identify bucket.", []string{"cluster"}, nil)
	descCacheEvents = prometheus.NewDesc("megane_cache_events_total",
		"Events the cluster's cache projector accepted.", []string{"cluster"}, nil)
	descCacheWrites = prometheus.NewDesc("megane_cache_writes_total",
		"Events the cluster's cache projector wrote to Redis.", []string{"cluster"}, nil)
	descCacheDrops = prometheus.NewDesc("megane_cache_drops_total",
		"Events the cluster's cache projector refused (queue full).", []string{"cluster"}, nil)
	descCacheQueue = prometheus.NewDesc("megane_cache_queue_depth",
		"Events waiting in the cluster's cache projector.", []string{"cluster"}, nil)
	descIPCRequests = prometheus.NewDesc("megane_ipc_requests_total",
		"IPC calls the process made, by op and target kind.", []string{"process", "op", "target"}, nil)
	descIPCErrors = prometheus.NewDesc("megane_ipc_request_errors_total",
		"IPC calls the process made that failed (remote error, no responders, timeout), by op and target kind.", []string{"process", "op", "target"}, nil)
	descIPCDuration = prometheus.NewDesc("megane_ipc_request_duration_seconds",
		"Latency of the IPC calls the process made, by op and target kind.", []string{"process", "op", "target"}, nil)
	descCPU = prometheus.NewDesc("megane_process_cpu_percent",
		"CPU the process used between its last two statistics samples, in percent of one core.", []string{"process", "role"}, nil)
	descRSS = prometheus.NewDesc("megane_process_resident_memory_bytes",
		"Resident memory of the process.", []string{"process", "role"}, nil)
	descHeap = prometheus.NewDesc("megane_process_heap_bytes",
		"Go heap in use by the process.", []string{"process", "role"}, nil)
	descGoroutines = prometheus.NewDesc("megane_process_goroutines",
		"Goroutines of the process.", []string{"process", "role"}, nil)
	descUptime = prometheus.NewDesc("megane_process_uptime_seconds",
		"Time since the process started.", []string{"process", "role"}, nil)
	descLaunchers = prometheus.NewDesc("megane_launchers",
		"Live launchers when several run the bot (0 with one launcher).", nil, nil)
	descLauncherClusters = prometheus.NewDesc("megane_launcher_clusters",
		"Clusters the serving launcher runs, by supervision state.", []string{"launcher", "state"}, nil)
	descLauncherReady = prometheus.NewDesc("megane_launcher_ready",
		"1 when every cluster the serving launcher runs is ready (what /readyz answers).", []string{"launcher"}, nil)
)

// supervisionStates are the states megane_launcher_clusters always exports.
var supervisionStates = []string{"starting", "ready", "stopping", "backoff", "gave-up", "stopped", "waiting-for-redis"}

// clusterStatuses are the cluster hash statuses megane_clusters always exports.
var clusterStatuses = []string{"starting", "ready", "stopping", "stopped", "failed", "unknown"}

// collector reads the bot at every scrape.
type collector struct{ s *Server }

// Describe sends nothing: the collector is unchecked, because the series
// it exports depend on the bot.
func (c *collector) Describe(chan<- *prometheus.Desc) {}

// Collect exports the bot's state.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	snap, reports, err := c.s.snapshot(ctx)
	if err == nil {
		err = c.s.exits.update(ctx)
	}
	if err != nil {
		c.s.log.Warn("monitor: cannot read the bot from Redis", slog.Any("error", err))
		ch <- gauge(descRedisUp, 0)
		return
	}
	ch <- gauge(descRedisUp, 1)
	ch <- gauge(descShardCount, float64(snap.ShardCount))
	for _, st := range shardStatuses {
		ch <- gauge(descShards, float64(snap.ShardsByStatus[st]), st)
	}
	for _, sh := range snap.Shards {
		id, cl := strconv.Itoa(sh.ID), strconv.Itoa(sh.Cluster)
		ch <- gauge(descShardStatus, 1, id, cl, sh.Status)
		ch <- gauge(descShardLatency, float64(sh.LatencyMS)/1000, id, cl)
		if sh.Guilds >= 0 {
			ch <- gauge(descShardGuilds, float64(sh.Guilds), id, cl)
		}
	}
	clusters := map[string]int{}
	for _, st := range clusterStatuses {
		clusters[st] = 0
	}
	for _, cl := range snap.Clusters {
		clusters[cl.Status]++
		id := strconv.Itoa(cl.ID)
		up := 0.0
		if cl.Alive {
			up = 1
		}
		ch <- gauge(descClusterUp, up, id)
		ch <- counter(descClusterRestarts, float64(cl.Restarts), id)
	}
	for st, n := range clusters {
		ch <- gauge(descClusters, float64(n), st)
	}
	byType, exits := c.s.exits.counts()
	for t, n := range byType {
		ch <- counter(descLifecycle, float64(n), t)
	}
	for k, n := range exits {
		ch <- counter(descClusterExits, float64(n), strconv.Itoa(k.cluster), k.reason)
	}
	b := snap.Budget
	ch <- gauge(descSessionTotal, float64(b.Total))
	ch <- gauge(descSessionRemaining, float64(b.Remaining))
	if !b.ResetAt.IsZero() {
		ch <- gauge(descSessionReset, float64(b.ResetAt.Unix()))
	}
	ch <- gauge(descMaxConcurrency, float64(b.MaxConcurrency))
	ch <- gauge(descLaunchers, float64(len(snap.Launchers)))
	for _, r := range reports {
		c.process(ch, r)
	}
	if l := snap.Launcher; l != nil {
		states := map[string]int{}
		for _, st := range supervisionStates {
			states[st] = 0
		}
		for _, st := range l.ClusterStates {
			states[st]++
		}
		for st, n := range states {
			ch <- gauge(descLauncherClusters, float64(n), l.ID, st)
		}
		ready := 0.0
		if l.Ready {
			ready = 1
		}
		ch <- gauge(descLauncherReady, ready, l.ID)
	}
}

// process exports one process's published statistics.
func (c *collector) process(ch chan<- prometheus.Metric, r stats.Report) {
	role := r.Role()
	num := func(field string) (float64, bool) { return r.Float(field) }
	if v, ok := num("cpu_percent"); ok {
		ch <- gauge(descCPU, v, r.Name, role)
	}
	if v, ok := num("rss_bytes"); ok {
		ch <- gauge(descRSS, v, r.Name, role)
	}
	if v, ok := num("heap_bytes"); ok {
		ch <- gauge(descHeap, v, r.Name, role)
	}
	if v, ok := num("goroutines"); ok {
		ch <- gauge(descGoroutines, v, r.Name, role)
	}
	if v, ok := num("uptime_seconds"); ok {
		ch <- gauge(descUptime, v, r.Name, role)
	}
	for _, m := range callMetrics(r) {
		ch <- counter(descIPCRequests, float64(m.Calls), r.Name, m.Op, m.Target)
		ch <- counter(descIPCErrors, float64(m.Errors), r.Name, m.Op, m.Target)
		buckets := make(map[float64]uint64, len(redisipc.CallBuckets))
		for i, ub := range redisipc.CallBuckets {
			if i < len(m.Buckets) {
				buckets[ub] = m.Buckets[i]
			}
		}
		h, err := prometheus.NewConstHistogram(descIPCDuration, m.Calls, m.Seconds, buckets, r.Name, m.Op, m.Target)
		if err == nil {
			ch <- h
		}
	}
	if role != "cluster" {
		return
	}
	id := r.Name[len("cluster:"):]
	if events, ok := r.Fields["gateway_events"].(map[string]any); ok {
		types := make([]string, 0, len(events))
		for t := range events {
			types = append(types, t)
		}
		sort.Strings(types)
		for _, t := range types {
			if n, ok := toFloat(events[t]); ok {
				ch <- counter(descGatewayEvents, n, id, t)
			}
		}
	}
	for field, d := range map[string]*prometheus.Desc{
		"identify_waits": descIdentifyWaits, "identify_wait_seconds": descIdentifyWaitSeconds,
		"cache_events": descCacheEvents, "cache_written": descCacheWrites, "cache_drops": descCacheDrops,
	} {
		if v, ok := num(field); ok {
			ch <- counter(d, v, id)
		}
	}
	if v, ok := num("cache_queued"); ok {
		ch <- gauge(descCacheQueue, v, id)
	}
}

// callMetrics reads the IPC call metrics a process published.
func callMetrics(r stats.Report) []redisipc.CallMetric {
	v, ok := r.Fields[redisipc.CallMetricsField]
	if !ok {
		return nil
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil
	}
	var out []redisipc.CallMetric
	if json.Unmarshal(b, &out) != nil {
		return nil
	}
	return out
}

func toFloat(v any) (float64, bool) {
	switch n := v.(type) {
	case int64:
		return float64(n), true
	case float64:
		return n, true
	case int:
		return float64(n), true
	}
	return 0, false
}

func gauge(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
}

func counter(d *prometheus.Desc, v float64, labels ...string) prometheus.Metric {
	return prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, labels...)
}
