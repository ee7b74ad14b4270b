package cli

import (
	"time"

	"github.com/megane-go/megane/clusterhash"
	"github.com/megane-go/megane/inspect"
)

// statusJSON is what status --json prints: inspect.Overview, whose
// clusters also carry their hash's fields typed (pid and restarts as
// numbers, times as RFC 3339), beside the raw fields kept for older
// readers.
type statusJSON struct {
	*inspect.Overview
	Clusters []statusCluster `json:"clusters"`
}

// statusCluster is one cluster of statusJSON: the overview's, plus the
// fields of clusterhash.Record the overview does not have typed.
type statusCluster struct {
	inspect.ClusterInfo
	PID        int       `json:"pid"`
	Host       string    `json:"host,omitempty"`
	Supervisor string    `json:"supervisor,omitempty"`
	Restarts   int       `json:"restarts"`
	ShardCount int       `json:"shard_count,omitempty"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	ReadyAt    time.Time `json:"ready_at,omitzero"`
	StoppedAt  time.Time `json:"stopped_at,omitzero"`
}

func typedStatus(ov *inspect.Overview) statusJSON {
	out := statusJSON{Overview: ov, Clusters: make([]statusCluster, 0, len(ov.Clusters))}
	for _, c := range ov.Clusters {
		r := clusterhash.Parse(c.Fields)
		out.Clusters = append(out.Clusters, statusCluster{ClusterInfo: c, PID: r.PID, Host: r.Host, Supervisor: r.Supervisor,
			Restarts: r.Restarts, ShardCount: r.ShardCount, StartedAt: r.StartedAt, ReadyAt: r.ReadyAt, StoppedAt: r.StoppedAt})
	}
	return out
}
