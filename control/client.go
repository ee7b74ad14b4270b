package control

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/megane-go/megane/redisipc"
)

// CallOption changes where or how a control request is sent.
type CallOption func(*callConfig)

type callConfig struct{ addr string }

// At sends the request to the launcher at addr (AddrOf(id), or a
// LauncherInfo's Addr) instead of Addr: with several launchers per bot,
// each serves its own clusters.
func At(addr string) CallOption { return func(c *callConfig) { c.addr = addr } }

// FetchStatus asks the launcher what it supervises.
func FetchStatus(ctx context.Context, n *redisipc.Node, opts ...CallOption) (Status, error) {
	var st Status
	err := call(ctx, n, OpStatus, nil, &st, opts)
	return st, err
}

// RestartCluster restarts cluster id and returns its state once it is ready
// again. ctx needs a deadline long enough for a restart (minutes).
func RestartCluster(ctx context.Context, n *redisipc.Node, id int, opts ...CallOption) (ClusterStatus, error) {
	var cs ClusterStatus
	err := call(ctx, n, OpRestartCluster, RestartClusterRequest{V: Version, Cluster: id}, &cs, opts)
	return cs, err
}

// RestartService restarts copy copyN of the service name, or every copy in
// turn with AllCopies, and returns the service's copies once the last one is
// ready again.
func RestartService(ctx context.Context, n *redisipc.Node, name string, copyN int, opts ...CallOption) ([]ServiceStatus, error) {
	in := RestartServiceRequest{V: Version, Service: name}
	if copyN != AllCopies {
		in.Copy = &copyN
	}
	var out []ServiceStatus
	err := call(ctx, n, OpRestartService, in, &out, opts)
	return out, err
}

// RollingRestart restarts every cluster in turn, then the services, and
// returns the steps and the launcher's status once the last one is ready.
// The children start from the launcher's configured binary, so a build
// replaced on disk is deployed this way. ctx needs a deadline long enough
// for the whole roll.
func RollingRestart(ctx context.Context, n *redisipc.Node, req RollingRestartRequest, opts ...CallOption) (RollingRestartReply, error) {
	var r RollingRestartReply
	req.V = Version
	err := call(ctx, n, OpRollingRestart, req, &r, opts)
	return r, err
}

// Reshard re-shards the bot (OpReshard) and returns what it did. ctx
// needs a deadline long enough for the new generation's IDENTIFYs.
func Reshard(ctx context.Context, n *redisipc.Node, req ReshardRequest, opts ...CallOption) (ReshardReply, error) {
	var r ReshardReply
	req.V = Version
	err := call(ctx, n, OpReshard, req, &r, opts)
	return r, err
}

// ReshardHold asks a launcher to stop its clusters and hold them for a
// re-shard's switch (OpReshardHold); use At for the launcher.
func ReshardHold(ctx context.Context, n *redisipc.Node, opts ...CallOption) (ReshardHoldReply, error) {
	var r ReshardHoldReply
	err := call(ctx, n, OpReshardHold, nil, &r, opts)
	return r, err
}

// ReshardResume asks a launcher to start the clusters it holds on the
// shards the shard map gives them now (OpReshardResume).
func ReshardResume(ctx context.Context, n *redisipc.Node, opts ...CallOption) (ReshardHoldReply, error) {
	var r ReshardHoldReply
	err := call(ctx, n, OpReshardResume, nil, &r, opts)
	return r, err
}

// Shutdown asks the launcher to stop gracefully. It returns once the
// launcher accepted; the stop itself happens afterwards.
func Shutdown(ctx context.Context, n *redisipc.Node, opts ...CallOption) error {
	var r ShutdownReply
	return call(ctx, n, OpShutdown, nil, &r, opts)
}

// Drain asks a launcher (several per bot; use At) to hand its clusters to
// the others one at a time and stop. It returns once every cluster runs
// elsewhere.
func Drain(ctx context.Context, n *redisipc.Node, opts ...CallOption) error {
	var r ShutdownReply
	return call(ctx, n, OpDrain, nil, &r, opts)
}

// call sends op to the launcher; a nil in sends no payload, as the ops
// without a request expect. Errors are redisipc's: ErrNoResponders when no
// launcher runs, ErrTimeout, or a *RemoteError from the launcher.
func call(ctx context.Context, n *redisipc.Node, op string, in, out any, opts []CallOption) error {
	cfg := callConfig{addr: Addr}
	for _, o := range opts {
		o(&cfg)
	}
	var payload []byte
	if in != nil {
		var err error
		if payload, err = json.Marshal(in); err != nil {
			return err
		}
	}
	b, err := n.Call(ctx, cfg.addr, op, payload)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(b, out); err != nil {
		return fmt.Errorf("control: %s: bad reply: %w", op, err)
	}
	return nil
}
