package testredis

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// ClusterOptions shapes a Redis Cluster of a test's own.
type ClusterOptions struct {
	// Masters is the number of master nodes; 0 means 3, the fewest
	// redis-cli --cluster create accepts.
	Masters int
	// ACLFile is given to every node as --aclfile. The harness then
	// connects (to create the cluster, to wait for it, to read its error
	// counts) as Username with Password, a user that may run everything.
	ACLFile            string
	Username, Password string
	// Args are further redis-server arguments for every node.
	Args []string
}

// Cluster is a running Redis Cluster of a test: masters without replicas
// and without persistence, on free loopback ports, every slot assigned.
type Cluster struct {
	// Nodes are the masters, in the order their addresses appear in URL.
	Nodes []*Server

	t    testing.TB
	opts ClusterOptions
}

// StartCluster runs a Redis Cluster for the test (o.Masters redis-servers
// with cluster-enabled yes, joined by redis-cli --cluster create) and stops
// it when the test ends. It returns once every node reports
// cluster_state:ok and knows every other node. It skips the test when
// redis-server or redis-cli is not installed (scripts/test installs both),
// and fails it when the cluster does not form within 30 s.
func StartCluster(t testing.TB, o ClusterOptions) *Cluster {
	t.Helper()
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Skip("SKIPPED: redis-cli is not installed (scripts/test installs the Debian package redis-tools)")
	}
	if o.Masters == 0 {
		o.Masters = 3
	}
	c := &Cluster{t: t, opts: o}
	args := append([]string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf",
		"--cluster-node-timeout", "5000"}, o.Args...)
	addrs := make([]string, o.Masters)
	for i := range o.Masters {
		s := StartServer(t, ServerOptions{Args: args, ACLFile: o.ACLFile, cluster: true})
		c.Nodes = append(c.Nodes, s)
		addrs[i] = s.Addr
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cliArgs := append(append([]string{"--cluster", "create"}, addrs...), "--cluster-replicas", "0", "--cluster-yes")
	if o.Username != "" {
		cliArgs = append(cliArgs, "--user", o.Username)
	}
	create := exec.CommandContext(ctx, cli, cliArgs...)
	if o.Password != "" {
		// Not on the command line, where ps would show it.
		create.Env = append(create.Environ(), "REDISCLI_AUTH="+o.Password)
	}
	var out bytes.Buffer
	create.Stdout, create.Stderr = &out, &out
	if err := create.Run(); err != nil {
		t.Fatalf("testredis: redis-cli --cluster create: %v\n%s", err, out.String())
	}
	if err := c.waitFormed(ctx); err != nil {
		t.Fatalf("testredis: %v\nredis-cli --cluster create said:\n%s", err, out.String())
	}
	return c
}

// waitFormed waits until every node says cluster_state:ok, knows all the
// nodes and sees every slot served.
func (c *Cluster) waitFormed(ctx context.Context) error {
	for _, s := range c.Nodes {
		rdb := c.NodeClient(s.Addr)
		err := waitClusterOK(ctx, rdb, len(c.Nodes))
		_ = rdb.Close()
		if err != nil {
			return fmt.Errorf("node %s: %w", s.Addr, err)
		}
	}
	return nil
}

func waitClusterOK(ctx context.Context, rdb *redis.Client, nodes int) error {
	var info map[string]string
	var err error
	for {
		info, err = clusterInfo(ctx, rdb)
		if err == nil && info["cluster_state"] == "ok" && info["cluster_slots_ok"] == "16384" &&
			info["cluster_known_nodes"] == strconv.Itoa(nodes) {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not formed: CLUSTER INFO %v (%v)", info, err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func clusterInfo(ctx context.Context, rdb *redis.Client) (map[string]string, error) {
	s, err := rdb.ClusterInfo(ctx).Result()
	if err != nil {
		return nil, err
	}
	return infoFields(s), nil
}

// infoFields parses the "name:value" lines of INFO and CLUSTER INFO.
func infoFields(s string) map[string]string {
	out := map[string]string{}
	for _, line := range strings.Split(s, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok {
			out[k] = v
		}
	}
	return out
}

// Addrs returns the nodes' host:port addresses.
func (c *Cluster) Addrs() []string {
	out := make([]string, len(c.Nodes))
	for i, s := range c.Nodes {
		out[i] = s.Addr
	}
	return out
}

// URL is the cluster's redis+cluster:// URL, naming every node, as
// redisconn and the bot's REDIS_URL take it.
func (c *Cluster) URL() string { return ClusterURL(c.Addrs()) }

// ClusterURL is the redis+cluster:// URL of the nodes at addrs.
func ClusterURL(addrs []string) string {
	u := "redis+cluster://" + addrs[0]
	for i, a := range addrs[1:] {
		sep := "&"
		if i == 0 {
			sep = "?"
		}
		u += sep + "addr=" + a
	}
	return u
}

// Client returns a cluster client as the harness's user, closed when the
// test ends; like the clients of Real, it fails the test on a CROSSSLOT
// reply.
func (c *Cluster) Client() redis.UniversalClient {
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(), Username: c.opts.Username,
		Password: c.opts.Password})
	watchCrossSlot(c.t, rdb)
	c.t.Cleanup(func() { _ = rdb.Close() })
	return rdb
}

// NodeClient returns a client of the node at addr (not a cluster client),
// as the harness's user; the caller closes it.
func (c *Cluster) NodeClient(addr string) *redis.Client {
	return redis.NewClient(&redis.Options{Addr: addr, Username: c.opts.Username, Password: c.opts.Password,
		MaxRetries: -1, Protocol: 2})
}

// CrossSlotErrors returns how many CROSSSLOT replies the cluster's nodes
// have sent since they started (INFO errorstats), whoever got them: the
// test's clients and the bot's child processes alike.
func (c *Cluster) CrossSlotErrors(ctx context.Context) (int64, error) {
	var total int64
	for _, a := range c.Addrs() {
		rdb := c.NodeClient(a)
		n, err := crossSlotErrors(ctx, rdb)
		_ = rdb.Close()
		if err != nil {
			return 0, fmt.Errorf("INFO errorstats of %s: %w", a, err)
		}
		total += n
	}
	return total, nil
}
