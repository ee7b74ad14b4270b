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
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/clusterhash"
	"github.com/megane-go/megane/identify"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/launcherhash"
	"github.com/megane-go/megane/leases"
	"github.com/megane-go/megane/redisipc"
	"github.com/megane-go/megane/sessions"
	"github.com/megane-go/megane/shardmap"
	"github.com/megane-go/megane/shardstatus"
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
	// Launcher is the launcher's record; nil when no launcher has run in
	// the namespace.
	Launcher *launcherhash.Record `json:"launcher,omitempty"`
	// ShardCount is the shard count of the shard map.
	ShardCount int                 `json:"shard_count"`
	Clusters   []ClusterInfo       `json:"clusters"`
	Shards     []ShardInfo         `json:"shards"`
	Nodes      []redisipc.NodeInfo `json:"nodes"`
	// Launchers are the live launchers when several run the bot
	// (MEGANE_TOTAL_CLUSTERS); empty when one does.
	Launchers []leases.Launcher `json:"launchers,omitempty"`
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
	// Owner is the launcher holding the cluster's lease when several run
	// the bot; "" when none does (the cluster is unowned) or one launcher
	// runs the bot.
	Owner string `json:"owner,omitempty"`
	// Unowned is set when several launchers run the bot and none holds
	// the cluster's lease: its shards are offline.
	Unowned bool `json:"unowned,omitempty"`
}

// ShardInfo is one shard's state and saved session.
type ShardInfo struct {
	ID        int    `json:"id"`
	Cluster   int    `json:"cluster"`
	Status    string `json:"status"`
	LatencyMS int    `json:"latency_ms"`
	// Guilds is the shard's guild count as its cluster last wrote it (the
	// projection's count of the shard's guilds, refreshed every heartbeat
	// interval); -1 when no cluster wrote one yet.
	Guilds  int               `json:"guilds"`
	Session sessions.State    `json:"session"`
	Fields  map[string]string `json:"fields,omitempty"`
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
	launcher, ok, err := launcherhash.Read(ctx, i.rdb, i.ks)
	if err != nil {
		return nil, fmt.Errorf("inspect: launcher: %w", err)
	}
	if ok {
		ov.Launcher = &launcher
	}
	sm, err := shardmap.Load(ctx, i.rdb, i.ks)
	if err != nil {
		return nil, fmt.Errorf("inspect: shard map: %w", err)
	}
	ov.ShardCount = sm.ShardCount
	clusterIDs := sm.ClusterIDs()
	pipe := i.rdb.Pipeline()
	hashes := make([]*redis.MapStringStringCmd, len(clusterIDs))
	beats := make([]*redis.IntCmd, len(clusterIDs))
	for n, c := range clusterIDs {
		hashes[n] = clusterhash.Get(ctx, pipe, i.ks, c)
		beats[n] = pipe.Exists(ctx, i.ks.ClusterHeartbeat(c))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("inspect: clusters: %w", err)
	}
	if ov.Launchers, err = leases.Launchers(ctx, i.rdb, i.ks); err != nil {
		return nil, fmt.Errorf("inspect: %w", err)
	}
	var owners []leases.Lease
	if len(ov.Launchers) > 0 {
		names := make([]string, len(clusterIDs))
		for n, c := range clusterIDs {
			names[n] = leases.ClusterName(c)
		}
		if owners, err = leases.Read(ctx, i.rdb, i.ks, names); err != nil {
			return nil, fmt.Errorf("inspect: %w", err)
		}
	}
	for n, c := range clusterIDs {
		shards := sm.ClusterShards(c)
		fields := hashes[n].Val()
		ci := ClusterInfo{
			ID: c, Status: fields[clusterhash.FieldStatus], Alive: beats[n].Val() == 1, Shards: shards, Fields: fields,
		}
		if owners != nil {
			if l := owners[n]; l.Held() {
				ci.Owner = l.Owner
			} else {
				ci.Unowned = true
			}
		}
		ov.Clusters = append(ov.Clusters, ci)
	}

	shardIDs := sm.Shards()
	states, err := sessions.Load(ctx, i.rdb, i.ks, shardIDs)
	if err != nil {
		return nil, fmt.Errorf("inspect: sessions: %w", err)
	}
	pipe = i.rdb.Pipeline()
	status := make([]*redis.MapStringStringCmd, len(shardIDs))
	for n, s := range shardIDs {
		status[n] = shardstatus.Get(ctx, pipe, i.ks, s)
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("inspect: shards: %w", err)
	}
	for n, s := range shardIDs {
		fields := status[n].Val()
		st := shardstatus.Parse(fields)
		ov.Shards = append(ov.Shards, ShardInfo{
			ID: s, Cluster: sm.Owners[s], Status: st.Status, LatencyMS: st.LatencyMS, Guilds: st.Guilds,
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
// Cluster it scans every master (at once).
func Namespaces(ctx context.Context, rdb redis.UniversalClient) ([]string, error) {
	var mu sync.Mutex // ForEachMaster runs the scans of all masters at once
	found := map[string]bool{}
	scan := func(ctx context.Context, c redis.UniversalClient) error {
		for _, pattern := range keyspace.NamespaceMarkerPatterns() {
			iter := c.Scan(ctx, 0, pattern, 1000).Iterator()
			for iter.Next(ctx) {
				if ns, ok := keyspace.NamespaceOfMarker(iter.Val()); ok {
					mu.Lock()
					found[ns] = true
					mu.Unlock()
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

// NamespaceInfo is what a namespace holds that tells a running bot from
// the leftovers of one that stopped or never started.
type NamespaceInfo struct {
	Name string `json:"name"`
	// Launcher is the status the launcher recorded ("running", "stopped"),
	// or empty when none did: the namespace holds only what a start that
	// failed early left (gateway info, shard map).
	Launcher string `json:"launcher,omitempty"`
	// Nodes counts the live IPC nodes of the bot's processes (launcher,
	// clusters, services; not megane-cli).
	Nodes int `json:"nodes"`
}

// Errors of DefaultNamespace.
var (
	// ErrNoNamespace means no bot has left keys in this Redis.
	ErrNoNamespace = errors.New("inspect: no Megane bot found in this Redis")
	// ErrAmbiguousNamespace means several bots could be meant: several are
	// running, or none is and several have run.
	ErrAmbiguousNamespace = errors.New("inspect: several bots share this Redis")
)

// DescribeNamespaces lists the namespaces Namespaces finds, each with its
// launcher status and live node count.
func DescribeNamespaces(ctx context.Context, rdb redis.UniversalClient) ([]NamespaceInfo, error) {
	names, err := Namespaces(ctx, rdb)
	if err != nil {
		return nil, err
	}
	out := make([]NamespaceInfo, 0, len(names))
	for _, name := range names {
		ks, err := keyspace.New(name)
		if err != nil {
			continue // not a namespace Megane could have written
		}
		info := NamespaceInfo{Name: name}
		st, err := launcherhash.ReadStatus(ctx, rdb, ks)
		if err != nil {
			return nil, fmt.Errorf("inspect: launcher of %s: %w", name, err)
		}
		info.Launcher = st
		nodes, err := redisipc.LiveNodes(ctx, rdb, ks)
		if err != nil {
			return nil, fmt.Errorf("inspect: nodes of %s: %w", name, err)
		}
		for _, n := range nodes {
			if n.Kind != redisipc.KindCLI {
				info.Nodes++
			}
		}
		out = append(out, info)
	}
	return out, nil
}

// DefaultNamespace picks the namespace a tool means when none is named:
// the only one; else the only one with live processes; else, when none
// runs, the only one a launcher ever ran in (leftovers of starts that failed
// early do not count). It also returns the namespaces it passed over, so a
// tool can mention them. It fails with ErrNoNamespace or
// ErrAmbiguousNamespace (naming the candidates and their state).
func DefaultNamespace(ctx context.Context, rdb redis.UniversalClient) (string, []NamespaceInfo, error) {
	all, err := DescribeNamespaces(ctx, rdb)
	if err != nil {
		return "", nil, err
	}
	if len(all) == 0 {
		return "", nil, ErrNoNamespace
	}
	pick := func(keep func(NamespaceInfo) bool) []NamespaceInfo {
		var out []NamespaceInfo
		for _, ns := range all {
			if keep(ns) {
				out = append(out, ns)
			}
		}
		return out
	}
	candidates := all
	if live := pick(func(ns NamespaceInfo) bool { return ns.Nodes > 0 }); len(live) > 0 {
		candidates = live
	} else if ran := pick(func(ns NamespaceInfo) bool { return ns.Launcher != "" }); len(ran) > 0 {
		candidates = ran
	}
	if len(candidates) > 1 {
		desc := make([]string, len(candidates))
		for i, ns := range candidates {
			desc[i] = ns.Name + " (" + ns.State() + ")"
		}
		return "", all, fmt.Errorf("%w: %s", ErrAmbiguousNamespace, strings.Join(desc, ", "))
	}
	chosen := candidates[0].Name
	return chosen, pick(func(ns NamespaceInfo) bool { return ns.Name != chosen }), nil
}

// State describes the namespace in a few words: "running, 3 live nodes",
// "stopped", "never started".
func (ns NamespaceInfo) State() string {
	st := ns.Launcher
	if st == "" {
		st = "never started"
	}
	if ns.Nodes > 0 {
		return fmt.Sprintf("%s, %d live nodes", st, ns.Nodes)
	}
	return st
}

// Age formats a unix-millisecond field as the time since then, or "-".
func Age(fields map[string]string, field string, now time.Time) string {
	ms, err := strconv.ParseInt(fields[field], 10, 64)
	if err != nil || ms <= 0 {
		return "-"
	}
	return now.Sub(time.UnixMilli(ms)).Round(time.Second).String()
}
