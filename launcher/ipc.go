package launcher

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/megane-go/megane/control"
	"github.com/megane-go/megane/lifecycle"
	"github.com/megane-go/megane/redisipc"
)

// Ops the launcher serves over IPC at the address "launcher" (redisipc).
// They and their payloads are defined in the light package control, which
// megane-cli and user programs import without linking the launcher.
const (
	// OpRestartCluster restarts one cluster (RestartCluster). Payload:
	// RestartClusterRequest. Reply: the cluster's ClusterStatus, once it is
	// ready again. Give the call a deadline long enough for a restart.
	OpRestartCluster = control.OpRestartCluster
	// OpRollingRestart restarts every cluster in turn, then the services
	// (Roll). Payload (optional): control.RollingRestartRequest. Reply:
	// RollReport, once the last process is ready.
	OpRollingRestart = control.OpRollingRestart
	// OpRestartService restarts the copies of a service one at a time
	// (RestartService), reviving copies the launcher gave up on. Payload:
	// RestartServiceRequest. Reply: the service's copies as
	// []ServiceStatus, once the last one is ready again.
	OpRestartService = control.OpRestartService
	// OpStatus replies with Status.
	OpStatus = control.OpStatus
	// OpShutdown stops the launcher gracefully (Shutdown). It replies
	// before the stop begins.
	OpShutdown = control.OpShutdown
)

// LauncherAddr is the IPC address of the launcher.
const LauncherAddr = control.Addr

// RestartClusterRequest is the payload of OpRestartCluster.
type RestartClusterRequest = control.RestartClusterRequest

// RestartServiceRequest is the payload of OpRestartService.
type RestartServiceRequest = control.RestartServiceRequest

// startIPC registers the launcher as the IPC node "launcher".
func (l *Launcher) startIPC(ctx context.Context, cleanups *[]func()) error {
	addr := LauncherAddr
	if l.coop != nil {
		addr = l.coop.addr
	}
	node, err := redisipc.New(ctx, redisipc.Options{
		Redis: l.rdb, Keys: l.ks, Addr: addr, Eval: l.cfg.evalLimits(RoleLauncher),
		Logger: l.log.With(slog.String("ipc", addr)),
	})
	if err != nil {
		return fmt.Errorf("launcher: IPC node: %w", err)
	}
	l.node = node
	*cleanups = append(*cleanups, func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = node.Close(cctx)
	})
	node.Handle(OpStatus, func(context.Context, *redisipc.Request) ([]byte, error) {
		st, err := l.Status()
		if err != nil {
			return nil, err
		}
		return json.Marshal(st)
	})
	node.Handle(OpRestartCluster, func(ctx context.Context, req *redisipc.Request) ([]byte, error) {
		var in control.RestartClusterRequest
		if err := req.Decode(&in); err != nil {
			return nil, fmt.Errorf("launcher: %s wants {\"cluster\": <id>}: %w", OpRestartCluster, err)
		}
		if err := control.CheckVersion(in.V); err != nil {
			return nil, err
		}
		l.log.Info("IPC: restart requested", slog.Int("cluster", in.Cluster), slog.String("from", req.From))
		if err := l.RestartCluster(ctx, in.Cluster); err != nil {
			return nil, err
		}
		st, err := l.Status()
		if err != nil {
			return nil, err
		}
		for _, c := range st.Clusters {
			if c.ID == in.Cluster {
				return json.Marshal(c)
			}
		}
		return nil, fmt.Errorf("%w: cluster %d", ErrNotOwned, in.Cluster)
	})
	node.Handle(OpRestartService, func(ctx context.Context, req *redisipc.Request) ([]byte, error) {
		var in control.RestartServiceRequest
		if err := req.Decode(&in); err != nil || in.Service == "" {
			return nil, fmt.Errorf("launcher: %s wants {\"service\": <name>, \"copy\": <n, optional>}: %w", OpRestartService,
				errors.Join(err, ErrUnknownService))
		}
		if err := control.CheckVersion(in.V); err != nil {
			return nil, err
		}
		copyN := AllCopies
		if in.Copy != nil {
			copyN = *in.Copy
		}
		l.log.Info("IPC: service restart requested", slog.String("service", in.Service), slog.Int("copy", copyN), slog.String("from", req.From))
		if err := l.RestartService(ctx, in.Service, copyN); err != nil {
			return nil, err
		}
		st, err := l.Status()
		if err != nil {
			return nil, err
		}
		var out []control.ServiceStatus
		for _, s := range st.Services {
			if s.Name == in.Service {
				out = append(out, s)
			}
		}
		return json.Marshal(out)
	})
	node.Handle(OpRollingRestart, func(ctx context.Context, req *redisipc.Request) ([]byte, error) {
		var in control.RollingRestartRequest
		if len(req.Payload) > 0 {
			if err := req.Decode(&in); err != nil {
				return nil, fmt.Errorf("launcher: %s wants {\"parallel\": <n>, \"skip_services\": <bool>} or nothing: %w", OpRollingRestart, err)
			}
			if err := control.CheckVersion(in.V); err != nil {
				return nil, err
			}
		}
		if in.Parallel < 0 || in.Parallel > maxClusters {
			return nil, fmt.Errorf("launcher: %s: parallel %d is outside 0..%d", OpRollingRestart, in.Parallel, maxClusters)
		}
		l.log.Info("IPC: rolling restart requested", slog.String("from", req.From), slog.Int("parallel", in.Parallel))
		rep, err := l.Roll(ctx, RollOptions{Parallel: in.Parallel, SkipServices: in.SkipServices})
		if err != nil {
			return nil, err
		}
		return json.Marshal(rep)
	})
	node.Handle(control.OpReshard, func(ctx context.Context, req *redisipc.Request) ([]byte, error) {
		var in control.ReshardRequest
		if len(req.Payload) > 0 {
			if err := req.Decode(&in); err != nil {
				return nil, fmt.Errorf("launcher: %s wants {\"shards\": <n>} or nothing: %w", control.OpReshard, err)
			}
			if err := control.CheckVersion(in.V); err != nil {
				return nil, err
			}
		}
		l.log.Info("IPC: re-shard requested", slog.String("from", req.From), slog.Int("shards", in.Shards))
		rep, err := l.Reshard(ctx, ReshardOptions{Shards: in.Shards})
		if err != nil {
			return nil, err
		}
		return json.Marshal(rep)
	})
	node.Handle(control.OpReshardHold, func(ctx context.Context, req *redisipc.Request) ([]byte, error) {
		l.log.Info("IPC: holding the clusters for a re-shard", slog.String("from", req.From))
		ids, err := l.holdClusters(ctx, control.ReshardHoldTimeout)
		if err != nil {
			return nil, err
		}
		return json.Marshal(control.ReshardHoldReply{Clusters: ids})
	})
	node.Handle(control.OpReshardResume, func(ctx context.Context, req *redisipc.Request) ([]byte, error) {
		l.log.Info("IPC: starting the held clusters on their new shards", slog.String("from", req.From))
		ids, err := l.resumeClusters(ctx)
		if err != nil {
			return nil, err
		}
		return json.Marshal(control.ReshardHoldReply{Clusters: ids})
	})
	node.Handle(control.OpDrain, func(ctx context.Context, req *redisipc.Request) ([]byte, error) {
		l.log.Info("IPC: drain requested", slog.String("from", req.From))
		timeout := l.cfg.ReadyTimeout + 3*l.cfg.LeaseTTL
		if err := l.Drain(ctx, timeout); err != nil {
			return nil, err
		}
		return json.Marshal(control.ShutdownReply{OK: true})
	})
	node.Handle(OpShutdown, func(_ context.Context, req *redisipc.Request) ([]byte, error) {
		l.log.Info("IPC: shutdown requested", slog.String("from", req.From))
		// Stop after this handler returned, so the reply goes out first.
		time.AfterFunc(50*time.Millisecond, func() { _ = l.Shutdown() })
		return json.Marshal(control.ShutdownReply{OK: true})
	})
	env := node.EvalEnv()
	env.Provide("shard_count", func() any { return l.shardCount })
	env.Provide("clusters", func() any {
		st, _ := l.Status()
		return st.Clusters
	})
	return nil
}

// lastEventID is the id of the newest lifecycle event, so that forwarding
// shard events to OnEvent starts exactly where this launcher started.
func (l *Launcher) lastEventID(ctx context.Context) string {
	msgs, err := l.rdb.XRevRangeN(ctx, l.ks.Events(), "+", "-", 1).Result()
	if err != nil || len(msgs) == 0 {
		return "0-0"
	}
	return msgs[0].ID
}

// forwardShardEvents hands the shard events the clusters publish to
// OnEvent; cluster and service events reach OnEvent from the supervisors.
func (l *Launcher) forwardShardEvents(ctx context.Context, from string) {
	if l.cfg.OnEvent == nil {
		return
	}
	for ctx.Err() == nil {
		evs, next, err := lifecycle.Follow(ctx, l.rdb, l.ks, from, 256, time.Second)
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, context.Canceled) {
				return
			}
			l.log.Warn("reading lifecycle events failed", slog.Any("error", err))
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		from = next
		for _, ev := range evs {
			if strings.HasPrefix(string(ev.Type), "shard_") {
				l.sink.deliver(ev)
			}
		}
	}
}
