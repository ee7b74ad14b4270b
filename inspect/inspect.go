// Package inspect reads the state of a running (or stopped) Megane bot from
// Redis alone: the launcher, clusters, shards, sessions, gateway limits and
// live IPC nodes. megane-cli is built on it, and user code can import it for
// dashboards or health checks. It never writes.
package inspect

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/identify"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/redisipc"
	"github.com/megane-go/megane/sessions"
)

// Inspector reads one namespace.
type Inspector struct {
	rdb redis.UniversalClient
	ks  keyspace.Keyspace
}

// New returns an Inspector of the namespace ks.
func New(rdb redis.UniversalClient, ks keyspace.Keyspace) *Inspector {
	return &Inspector{rdb: rdb, ks: ks}
}

// Overview is a snapshot of the whole bot.
type Overview struct {
	Namespace string `json:"namespace"`
	// Gateway is what the launcher learnt from GET /gateway/bot, with the
	// effective max_concurrency and the session start budget. Zero when no
	// launcher has run in the namespace.
	Gateway identify.GatewayInfo `json:"gateway"`
	// Launcher is the launcher's state hash as stored.
	Launcher map[string]string `json:"launcher,omitempty"`
	// ShardCount is the shard count of the shard map.
	ShardCount int                 `json:"shard_count"`
	Clusters   []ClusterInfo       `json:"clusters"`
	Shards     []ShardInfo         `json:"shards"`
	Nodes      []redisipc.NodeInfo `json:"nodes"`
}

// ClusterInfo is one cluster's state.
type ClusterInfo struct {
	ID     int    `json:"id"`
	Status string `json:"status"`
	// Alive reports whether its heartbeat key is present (it expires a few
	// heartbeat intervals after the process stops refreshing it).
	Alive  bool              `json:"alive"`
	Shards []int             `json:"shards"`
	Fields map[string]string `json:"fields,omitempty"`
}

// ShardInfo is one shard's state and saved session.
type ShardInfo struct {
	ID        int               `json:"id"`
	Cluster   int               `json:"cluster"`
	Status    string            `json:"status"`
	LatencyMS int               `json:"latency_ms"`
	Session   sessions.State    `json:"session"`
	Fields    map[string]string `json:"fields,omitempty"`
}

// Overview reads everything in a few pipelined round trips.
func (i *Inspector) Overview(ctx context.Context) (*Overview, error) {
	ov := &Overview{Namespace: i.ks.Namespace()}
	gw, err := identify.LoadGatewayInfo(ctx, i.rdb, i.ks)
	switch {
	case err == nil:
		ov.Gateway = gw
	case errors.Is(err, identify.ErrNoGatewayInfo):
	default:
		return nil, fmt.Errorf("inspect: gateway: %w", err)
	}
	launcher, err := i.rdb.HGetAll(ctx, i.ks.Launcher()).Result()
	if err != nil {
		return nil, fmt.Errorf("inspect: launcher: %w", err)
	}
	if len(launcher) > 0 {
		ov.Launcher = launcher
	}
	shardMap, err := i.rdb.HGetAll(ctx, i.ks.ShardMap()).Result()
	if err != nil {
		return nil, fmt.Errorf("inspect: shard map: %w", err)
	}
	ov.ShardCount, _ = strconv.Atoi(shardMap["shard_count"])

	byCluster := map[int][]int{}
	shardCluster := map[int]int{}
	for field, v := range shardMap {
		shard, err1 := strconv.Atoi(field)
		cl, err2 := strconv.Atoi(v)
		if err1 != nil || err2 != nil {
			continue // "shard_count", "clusters" and other metadata
		}
		byCluster[cl] = append(byCluster[cl], shard)
		shardCluster[shard] = cl
	}
	if n, err := strconv.Atoi(shardMap["clusters"]); err == nil {
		for c := 0; c < n; c++ {
			if _, ok := byCluster[c]; !ok {
				byCluster[c] = nil
			}
		}
	}

	clusterIDs := make([]int, 0, len(byCluster))
	for c := range byCluster {
		clusterIDs = append(clusterIDs, c)
	}
	sort.Ints(clusterIDs)
	pipe := i.rdb.Pipeline()
	hashes := make([]*redis.MapStringStringCmd, len(clusterIDs))
	beats := make([]*redis.IntCmd, len(clusterIDs))
	for n, c := range clusterIDs {
		hashes[n] = pipe.HGetAll(ctx, i.ks.Cluster(c))
		beats[n] = pipe.Exists(ctx, i.ks.ClusterHeartbeat(c))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("inspect: clusters: %w", err)
	}
	for n, c := range clusterIDs {
		shards := byCluster[c]
		sort.Ints(shards)
		fields := hashes[n].Val()
		ov.Clusters = append(ov.Clusters, ClusterInfo{
			ID: c, Status: fields["status"], Alive: beats[n].Val() == 1, Shards: shards, Fields: fields,
		})
	}

	shardIDs := make([]int, 0, len(shardCluster))
	for s := range shardCluster {
		shardIDs = append(shardIDs, s)
	}
	sort.Ints(shardIDs)
	states, err := sessions.Load(ctx, i.rdb, i.ks, shardIDs)
	if err != nil {
		return nil, fmt.Errorf("inspect: sessions: %w", err)
	}
	pipe = i.rdb.Pipeline()
	status := make([]*redis.MapStringStringCmd, len(shardIDs))
	for n, s := range shardIDs {
		status[n] = pipe.HGetAll(ctx, i.ks.ShardStatus(s))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("inspect: shards: %w", err)
	}
	for n, s := range shardIDs {
		fields := status[n].Val()
		lat, _ := strconv.Atoi(fields["latency_ms"])
		ov.Shards = append(ov.Shards, ShardInfo{
			ID: s, Cluster: shardCluster[s], Status: fields["status"], LatencyMS: lat,
			Session: states[s], Fields: fields,
		})
	}

	nodes, err := redisipc.LiveNodes(ctx, i.rdb, i.ks)
	if err != nil {
		return nil, fmt.Errorf("inspect: nodes: %w", err)
	}
	ov.Nodes = nodes
	return ov, nil
}

// Namespaces lists the namespaces in Redis that a launcher has run in, by
// scanning for their launcher or gateway hashes (SCAN, never KEYS). On Redis
// Cluster it scans every master.
func Namespaces(ctx context.Context, rdb redis.UniversalClient) ([]string, error) {
	found := map[string]bool{}
	scan := func(ctx context.Context, c redis.UniversalClient) error {
		for _, suffix := range []string{"launcher", "gateway"} {
			iter := c.Scan(ctx, 0, keyspace.Prefix+":*:"+suffix, 1000).Iterator()
			for iter.Next(ctx) {
				k := strings.TrimPrefix(iter.Val(), keyspace.Prefix+":")
				ns := strings.TrimSuffix(k, ":"+suffix)
				if !strings.Contains(ns, ":") {
					found[ns] = true
				}
			}
			if err := iter.Err(); err != nil {
				return err
			}
		}
		return nil
	}
	var err error
	if cc, ok := rdb.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, c *redis.Client) error { return scan(ctx, c) })
	} else {
		err = scan(ctx, rdb)
	}
	if err != nil {
		return nil, fmt.Errorf("inspect: scan namespaces: %w", err)
	}
	out := make([]string, 0, len(found))
	for ns := range found {
		out = append(out, ns)
	}
	sort.Strings(out)
	return out, nil
}

// Age formats a unix-millisecond field as the time since then, or "-".
func Age(fields map[string]string, field string, now time.Time) string {
	ms, err := strconv.ParseInt(fields[field], 10, 64)
	if err != nil || ms <= 0 {
		return "-"
	}
	return now.Sub(time.UnixMilli(ms)).Round(time.Second).String()
}
