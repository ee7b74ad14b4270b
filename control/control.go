// Package control is the launcher's control protocol: the ops the launcher
// serves at the IPC address "launcher", and the typed requests and replies
// they carry. The launcher decodes these types and megane-cli (or any
// program) sends them, so neither side repeats op names or rebuilds payloads
// as maps.
//
// The package is light on purpose: it imports redisipc and nothing of the
// launcher, the clusters or disgo, so a program that only controls a running
// bot does not link the Discord library.
package control

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/megane-go/megane/redisipc"
)

// Addr is the IPC address of the launcher of a bot that one launcher
// runs. With several (MEGANE_TOTAL_CLUSTERS), each serves at AddrOf(id).
const Addr = redisipc.KindLauncher

// AddrOf is the IPC address of launcher id of a bot several launchers run.
func AddrOf(id string) string { return redisipc.KindLauncher + ":" + id }

// Version is the version of the request types this package sends. A request
// without a version (sent before requests carried one) is version 1.
const Version = 1

// ErrVersion is returned for a request newer than the launcher understands.
var ErrVersion = errors.New("control: unsupported request version")

// Ops the launcher serves at Addr.
const (
	// OpRestartCluster restarts one cluster. Payload: RestartClusterRequest.
	// Reply: the cluster's ClusterStatus, once it is ready again. Give the
	// call a deadline long enough for a restart.
	OpRestartCluster = "restart-cluster"
	// OpRollingRestart restarts every cluster in turn, then the services,
	// from the launcher's configured binary. Payload (optional):
	// RollingRestartRequest. Reply: RollingRestartReply, once the last one is
	// ready; the launcher publishes a lifecycle event per step meanwhile.
	OpRollingRestart = "rolling-restart"
	// OpRestartService restarts the copies of a service one at a time,
	// reviving copies the launcher gave up on. Payload:
	// RestartServiceRequest. Reply: the service's copies as
	// []ServiceStatus, once the last one is ready again.
	OpRestartService = "restart-service"
	// OpStatus replies with Status. No payload.
	OpStatus = "status"
	// OpShutdown stops the launcher gracefully. No payload. Reply:
	// ShutdownReply, sent before the stop begins.
	OpShutdown = "shutdown"
	// OpDrain hands the launcher's clusters, one at a time, to the other
	// launchers of the bot (several per bot), then stops it. No payload.
	// Reply: ShutdownReply, once every cluster runs elsewhere. Give the call
	// a deadline long enough for every cluster's move.
	OpDrain = "drain"
	// OpReshard re-shards the bot: a new generation of clusters with the
	// new shard count comes up beside the running one, then replaces it.
	// Payload: ReshardRequest. Reply: ReshardReply, once the new
	// generation serves (or the re-shard failed and the old one serves
	// on). Give the call a deadline long enough for every new shard's
	// IDENTIFY.
	OpReshard = "reshard"
	// OpReshardHold and OpReshardResume are the two halves of a re-shard's
	// switch on a bot run by several launchers: the launcher that runs the
	// re-shard asks every other one to stop its clusters and hold them
	// (reply: ReshardHoldReply, once they stopped), moves the records, then
	// asks each to start them again on the shards the shard map now gives
	// them (reply: ReshardHoldReply, once they are ready). A launcher holds
	// at most ReshardHoldTimeout, then resumes by itself. No payload.
	OpReshardHold   = "reshard-hold"
	OpReshardResume = "reshard-resume"
)

// ReshardHoldTimeout bounds how long a launcher keeps its clusters stopped
// for another launcher's re-shard (OpReshardHold) before it starts them
// again by itself, on whatever the shard map says then.
const ReshardHoldTimeout = 2 * time.Minute

// ReshardHoldReply is the reply of OpReshardHold and OpReshardResume.
type ReshardHoldReply struct {
	// Clusters are the clusters the launcher stopped (or started again).
	Clusters []int `json:"clusters"`
}

// ReshardRequest is the payload of OpReshard.
type ReshardRequest struct {
	// V is the request's version (Version); zero means 1.
	V int `json:"v,omitempty"`
	// Shards is the new shard count; zero asks Discord's recommendation,
	// rounded as the launcher is configured.
	Shards int `json:"shards,omitempty"`
}

// ReshardStep is one step of a re-shard.
type ReshardStep struct {
	// Phase is "plan", "standby", "switch", "done" or "rollback".
	Phase string `json:"phase"`
	// Cluster is the cluster the step concerns; -1 for the whole bot.
	Cluster int `json:"cluster"`
	// Detail says what happened, in words.
	Detail string `json:"detail"`
	// Duration is how long the step took.
	Duration time.Duration `json:"duration_ns"`
}

// ReshardReply is the reply of OpReshard: the launcher's Status at the
// end, the steps and the totals.
type ReshardReply struct {
	Status
	// From and To are the old and the new shard count.
	From int `json:"from"`
	To   int `json:"to"`
	// Steps are the re-shard's steps in order.
	Steps []ReshardStep `json:"steps"`
	// Took is the whole re-shard; Switch the part from the old
	// generation's stop to every new cluster ready (events meanwhile are
	// delayed, not lost: the new sessions resume and Discord replays them).
	Took   time.Duration `json:"took_ns"`
	Switch time.Duration `json:"switch_ns"`
	// Identified counts the new generation's IDENTIFYs; Resumed its shards
	// that resumed at the switch; Replayed the dispatches replayed then.
	Identified int `json:"identified"`
	Resumed    int `json:"resumed"`
	Replayed   int `json:"replayed"`
}

// AllCopies, as the copy of RestartService, restarts every copy of a service.
const AllCopies = -1

// RestartClusterRequest is the payload of OpRestartCluster.
type RestartClusterRequest struct {
	// V is the request's version (Version); zero means 1.
	V int `json:"v,omitempty"`
	// Cluster is the id of the cluster to restart.
	Cluster int `json:"cluster"`
}

// RestartServiceRequest is the payload of OpRestartService.
type RestartServiceRequest struct {
	// V is the request's version (Version); zero means 1.
	V int `json:"v,omitempty"`
	// Service is the service's name.
	Service string `json:"service"`
	// Copy is the copy to restart; nil restarts every copy in turn.
	Copy *int `json:"copy,omitempty"`
}

// RollingRestartRequest is the optional payload of OpRollingRestart.
type RollingRestartRequest struct {
	// V is the request's version (Version); zero means 1.
	V int `json:"v,omitempty"`
	// Parallel is how many processes restart at once; zero means 1.
	Parallel int `json:"parallel,omitempty"`
	// SkipServices leaves the services alone (by default they follow the
	// clusters).
	SkipServices bool `json:"skip_services,omitempty"`
}

// RollStep is one step of a rolling restart: the processes restarted
// together, and what it cost.
type RollStep struct {
	// Processes names them: "cluster 2", "service stats#0".
	Processes []string `json:"processes"`
	// Duration is from the stop of the old processes to the new ones
	// ready.
	Duration time.Duration `json:"duration_ns"`
	// Resumed and Identified count the shards that resumed and identified.
	Resumed    int `json:"resumed"`
	Identified int `json:"identified"`
	// Replayed counts the dispatches Discord replayed on the resumes.
	Replayed int `json:"replayed"`
	// Error says why the step failed; the roll stops there, and the failed
	// process was started again from the launcher's own build (RolledBack).
	Error      string `json:"error,omitempty"`
	RolledBack bool   `json:"rolled_back,omitempty"`
}

// String is the step in one line, as the lifecycle.RollStep event's detail
// and megane-cli print it.
func (s RollStep) String() string {
	d := fmt.Sprintf("%s: %s, resumed %d, identified %d, replayed %d",
		strings.Join(s.Processes, ", "), s.Duration.Round(time.Millisecond), s.Resumed, s.Identified, s.Replayed)
	if s.Error != "" {
		d += "; FAILED: " + s.Error
		if s.RolledBack {
			d += " (rolled back to the build it ran before)"
		}
	}
	return d
}

// RollingRestartReply is the reply of OpRollingRestart: the launcher's
// Status once the roll ended (as before steps were reported, so older
// clients still decode it), every step, and the totals.
type RollingRestartReply struct {
	Status
	Steps      []RollStep    `json:"steps"`
	Took       time.Duration `json:"took_ns"`
	Resumed    int           `json:"resumed"`
	Identified int           `json:"identified"`
	Replayed   int           `json:"replayed"`
}

// ShutdownReply is the reply of OpShutdown.
type ShutdownReply struct {
	OK bool `json:"ok"`
}

// CheckVersion fails with ErrVersion when v, a request's V, is newer than
// Version. The launcher calls it on every request it decodes, so an older
// launcher refuses a request it might misread instead of guessing.
func CheckVersion(v int) error {
	if v > Version {
		return fmt.Errorf("%w: %d (this launcher speaks up to %d)", ErrVersion, v, Version)
	}
	return nil
}

// State is the supervision state of a child of the launcher.
type State string

// States of a child, as Status and the Redis hash keyspace.Cluster report them.
const (
	StateStarting State = "starting" // spawned, not ready yet
	StateReady    State = "ready"    // reported ready
	StateStopping State = "stopping" // asked to exit (restart or shutdown)
	StateBackoff  State = "backoff"  // crashed; waiting before the respawn
	StateGaveUp   State = "gave-up"  // crashed too often; waits for a requested restart
	StateStopped  State = "stopped"  // the launcher stopped
	// StateWaitingRedis: exited while Redis was failing; respawned once
	// Redis works, without counting a crash.
	StateWaitingRedis State = "waiting-for-redis"
	// StateNotOwned: another launcher holds the lease (several launchers
	// per bot), or nobody does yet.
	StateNotOwned State = "not-owned"
)

// Status is a snapshot of what the launcher supervises: the reply of
// OpStatus and OpRollingRestart.
type Status struct {
	Namespace      string          `json:"namespace"`
	ShardCount     int             `json:"shard_count"`
	MaxConcurrency int             `json:"max_concurrency"`
	AllReady       bool            `json:"all_ready"`
	StartedAt      time.Time       `json:"started_at"`
	Clusters       []ClusterStatus `json:"clusters"`
	Services       []ServiceStatus `json:"services"`
	// Launcher describes the launcher when several run the bot
	// (MEGANE_TOTAL_CLUSTERS); Clusters and Services then list only what
	// it owns. Nil with one launcher per bot.
	Launcher *LauncherInfo `json:"launcher,omitempty"`
}

// LauncherInfo is one of several launchers of a bot.
type LauncherInfo struct {
	ID   string `json:"id"`
	Host string `json:"host"`
	PID  int    `json:"pid"`
	// Addr is its IPC address (AddrOf(ID)).
	Addr string `json:"addr"`
	// Capacity is how many clusters it runs at most.
	Capacity int `json:"capacity"`
	// TotalClusters is the bot's cluster count.
	TotalClusters int `json:"total_clusters"`
}

// ProcessStatus is the supervision state of one child.
type ProcessStatus struct {
	State State `json:"state"`
	// PID is zero while no process runs (backoff, gave up, stopped).
	PID int `json:"pid"`
	// Restarts counts respawns, requested or after a crash.
	Restarts  int       `json:"restarts"`
	StartedAt time.Time `json:"started_at,omitzero"`
	ReadyAt   time.Time `json:"ready_at,omitzero"`
}

// ClusterStatus is the state of one cluster: the reply of OpRestartCluster.
type ClusterStatus struct {
	ID     int   `json:"id"`
	Shards []int `json:"shards"`
	ProcessStatus
}

// ServiceStatus is the state of one copy of a service.
type ServiceStatus struct {
	Name string `json:"name"`
	Copy int    `json:"copy"`
	ProcessStatus
}
