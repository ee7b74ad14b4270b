package shardstatus_test

import (
	"context"
	"testing"
	"time"

	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/shardstatus"
)

func TestWriteParse(t *testing.T) {
	_, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("ss")
	ctx := context.Background()

	if r := shardstatus.Parse(shardstatus.Get(ctx, rdb, ks, 3).Val()); r.Status != "" || r.Cluster != -1 || r.Guilds != -1 {
		t.Errorf("Parse of nothing = %+v", r)
	}
	if shardstatus.HasState(ctx, rdb, ks, 3).Val() {
		t.Error("HasState of nothing")
	}
	at := time.UnixMilli(1_700_000_000_000)
	if err := shardstatus.SetState(ctx, rdb, ks, 3, 1, shardstatus.Ready, at).Err(); err != nil {
		t.Fatal(err)
	}
	if err := shardstatus.SetHealth(ctx, rdb, ks, 3, 12, -1, at).Err(); err != nil {
		t.Fatal(err)
	}
	// The raw layout, as redis-cli shows it: no guilds while unknown.
	got := rdb.HGetAll(ctx, ks.ShardStatus(3)).Val()
	want := map[string]string{"status": "ready", "cluster": "1", "latency_ms": "12", "updated_at": "1700000000000"}
	if len(got) != len(want) {
		t.Errorf("hash = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}
	if err := shardstatus.SetHealth(ctx, rdb, ks, 3, 15, 7, at.Add(time.Second)).Err(); err != nil {
		t.Fatal(err)
	}
	r := shardstatus.Parse(shardstatus.Get(ctx, rdb, ks, 3).Val())
	if r.Status != shardstatus.Ready || r.Cluster != 1 || r.LatencyMS != 15 || r.Guilds != 7 || !r.UpdatedAt.Equal(at.Add(time.Second)) {
		t.Errorf("Parse = %+v", r)
	}
	if !shardstatus.HasState(ctx, rdb, ks, 3).Val() {
		t.Error("HasState after SetState")
	}
	if err := shardstatus.Delete(ctx, rdb, ks, 3).Err(); err != nil {
		t.Fatal(err)
	}
	if n := rdb.Exists(ctx, ks.ShardStatus(3)).Val(); n != 0 {
		t.Error("Delete left the hash")
	}
}
