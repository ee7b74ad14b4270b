package redisipc

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/megane-go/megane/shardmap"
)

// ShardOf returns the shard that owns guildID among shardCount shards, as
// Discord computes it: (guild_id >> 22) % shard_count.
func ShardOf(guildID uint64, shardCount int) int {
	return int((guildID >> 22) % uint64(shardCount))
}

type shardMap struct {
	at       time.Time
	count    int
	owner    map[int]int // shard -> cluster
	clusters []int       // distinct cluster ids, sorted
}

// shardMapCache keeps the shard map for ShardMapTTL so routing a guild
// costs no round trip in the common case.
type shardMapCache struct {
	mu sync.Mutex
	m  *shardMap
}

func (c *shardMapCache) get(ctx context.Context, n *Node) (*shardMap, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m != nil && time.Since(c.m.at) < n.opts.ShardMapTTL {
		return c.m, nil
	}
	sm, err := shardmap.Load(ctx, n.rdb, n.ks)
	if err != nil {
		return nil, fmt.Errorf("redisipc: read shard map: %w", err)
	}
	m := &shardMap{at: time.Now(), owner: sm.Owners, clusters: sm.ClusterIDs(), count: sm.ShardCount}
	c.m = m
	return m, nil
}

// ClusterOfGuild returns the id of the cluster that owns guildID, from the
// shard map in Redis (cached for Options.ShardMapTTL). It fails with
// ErrNoShardMap when the map is missing or does not cover the shard.
func (n *Node) ClusterOfGuild(ctx context.Context, guildID uint64) (int, error) {
	m, err := n.shards.get(ctx, n)
	if err != nil {
		return 0, err
	}
	if m.count <= 0 {
		return 0, fmt.Errorf("%w: no shard_count in %s", ErrNoShardMap, n.ks.ShardMap())
	}
	shard := ShardOf(guildID, m.count)
	cl, ok := m.owner[shard]
	if !ok {
		return 0, fmt.Errorf("%w: shard %d has no cluster", ErrNoShardMap, shard)
	}
	return cl, nil
}

// CallGuild calls op on the cluster that owns guildID, instead of asking
// every cluster.
func (n *Node) CallGuild(ctx context.Context, guildID uint64, op string, payload []byte) ([]byte, error) {
	cl, err := n.ClusterOfGuild(ctx, guildID)
	if err != nil {
		return nil, err
	}
	return n.Call(ctx, ClusterAddr(cl), op, payload)
}

// CommandOp returns the op of the cluster command name, "cmd:<name>".
func CommandOp(name string) string { return "cmd:" + name }

// HandleCommand registers h as the cluster command name (the op
// "cmd:<name>"). Register the same commands on every cluster.
func (n *Node) HandleCommand(name string, h Handler) { n.Handle(CommandOp(name), h) }

// Command runs the cluster command name on cluster id.
func (n *Node) Command(ctx context.Context, cluster int, name string, payload []byte) ([]byte, error) {
	return n.Call(ctx, ClusterAddr(cluster), CommandOp(name), payload)
}

// CommandGuild runs the cluster command name on the cluster that owns
// guildID.
func (n *Node) CommandGuild(ctx context.Context, guildID uint64, name string, payload []byte) ([]byte, error) {
	return n.CallGuild(ctx, guildID, CommandOp(name), payload)
}

// CommandAll runs the cluster command name on every live cluster and
// gathers the results.
func (n *Node) CommandAll(ctx context.Context, name string, payload []byte) (*Gathered, error) {
	return n.Gather(ctx, TargetClusters, CommandOp(name), payload)
}
