package clusterhash

import (
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	r := Parse(map[string]string{
		FieldStatus: "ready", FieldPID: "42", FieldHost: "h", FieldShards: "0,1,2", FieldShardCount: "8",
		FieldStartedAt: "1700000000000", FieldSupervisor: "ready", FieldRestarts: "3", FieldReadyAt: "bad",
	})
	if r.Status != "ready" || r.PID != 42 || r.Host != "h" || len(r.Shards) != 3 || r.ShardCount != 8 ||
		!r.StartedAt.Equal(time.UnixMilli(1700000000000)) || !r.ReadyAt.IsZero() || r.Supervisor != "ready" || r.Restarts != 3 {
		t.Errorf("Parse = %+v", r)
	}
	if r := Parse(nil); r.PID != 0 || r.Shards != nil {
		t.Errorf("Parse(nil) = %+v", r)
	}
}
