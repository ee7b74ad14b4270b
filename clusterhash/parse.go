package clusterhash

import (
	"strconv"
	"strings"
	"time"
)

// Record is a cluster hash read back typed: what the cluster process and
// its launcher wrote. Absent or malformed fields are zero.
type Record struct {
	Status     string    `json:"status"`
	PID        int       `json:"pid"`
	Host       string    `json:"host,omitempty"`
	Shards     []int     `json:"shards,omitempty"`
	ShardCount int       `json:"shard_count,omitempty"`
	StartedAt  time.Time `json:"started_at,omitzero"`
	ReadyAt    time.Time `json:"ready_at,omitzero"`
	StoppedAt  time.Time `json:"stopped_at,omitzero"`
	Supervisor string    `json:"supervisor,omitempty"`
	Restarts   int       `json:"restarts"`
}

// Parse reads a Record from the fields of an HGETALL of keyspace.Cluster.
func Parse(h map[string]string) Record {
	num := func(f string) int {
		n, _ := strconv.Atoi(h[f])
		return n
	}
	at := func(f string) time.Time {
		ms, err := strconv.ParseInt(h[f], 10, 64)
		if err != nil || ms <= 0 {
			return time.Time{}
		}
		return time.UnixMilli(ms)
	}
	r := Record{
		Status: h[FieldStatus], PID: num(FieldPID), Host: h[FieldHost], ShardCount: num(FieldShardCount),
		StartedAt: at(FieldStartedAt), ReadyAt: at(FieldReadyAt), StoppedAt: at(FieldStoppedAt),
		Supervisor: h[FieldSupervisor], Restarts: num(FieldRestarts),
	}
	if s := h[FieldShards]; s != "" {
		for _, p := range strings.Split(s, ",") {
			if n, err := strconv.Atoi(p); err == nil {
				r.Shards = append(r.Shards, n)
			}
		}
	}
	return r
}
