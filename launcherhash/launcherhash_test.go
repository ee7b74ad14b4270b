package launcherhash_test

import (
	"context"
	"testing"
	"time"

	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/launcherhash"
)

func TestWriteRead(t *testing.T) {
	_, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("lh")
	ctx := context.Background()

	if _, ok, err := launcherhash.Read(ctx, rdb, ks); ok || err != nil {
		t.Fatalf("Read of nothing = %v, %v", ok, err)
	}
	if st, err := launcherhash.ReadStatus(ctx, rdb, ks); st != "" || err != nil {
		t.Fatalf("ReadStatus of nothing = %q, %v", st, err)
	}
	started := time.UnixMilli(1_700_000_000_000)
	rec := launcherhash.Record{Status: launcherhash.StatusRunning, PID: 42, Host: "h",
		StartedAt: started, Clusters: 3, ShardCount: 6, MaxConcurrency: 2}
	if err := launcherhash.Write(ctx, rdb, ks, rec).Err(); err != nil {
		t.Fatal(err)
	}
	// The raw layout, as redis-cli shows it.
	want := map[string]string{"status": "running", "pid": "42", "host": "h", "started_at": "1700000000000",
		"clusters": "3", "shard_count": "6", "max_concurrency": "2"}
	got := rdb.HGetAll(ctx, ks.Launcher()).Val()
	if len(got) != len(want) {
		t.Errorf("hash = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s = %q, want %q", k, got[k], v)
		}
	}

	ready := started.Add(time.Second)
	if err := launcherhash.SetAllReady(ctx, rdb, ks, ready).Err(); err != nil {
		t.Fatal(err)
	}
	back, ok, err := launcherhash.Read(ctx, rdb, ks)
	if !ok || err != nil {
		t.Fatalf("Read = %v, %v", ok, err)
	}
	rec.AllReadyAt = ready
	if !back.StartedAt.Equal(rec.StartedAt) || !back.AllReadyAt.Equal(rec.AllReadyAt) {
		t.Errorf("times = %v, %v, want %v, %v", back.StartedAt, back.AllReadyAt, rec.StartedAt, rec.AllReadyAt)
	}
	back.StartedAt, back.AllReadyAt, rec.StartedAt, rec.AllReadyAt = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if back != rec {
		t.Errorf("Read = %+v, want %+v", back, rec)
	}
	if n := launcherhash.Exists(ctx, rdb, ks).Val(); n != 1 {
		t.Errorf("Exists = %d", n)
	}
	// A later Write without AllReadyAt keeps it.
	if err := launcherhash.Write(ctx, rdb, ks, launcherhash.Record{Status: launcherhash.StatusStopped}).Err(); err != nil {
		t.Fatal(err)
	}
	if st, _ := launcherhash.ReadStatus(ctx, rdb, ks); st != launcherhash.StatusStopped {
		t.Errorf("status = %q", st)
	}
	if v := rdb.HGet(ctx, ks.Launcher(), launcherhash.FieldAllReadyAt).Val(); v != "1700000001000" {
		t.Errorf("all_ready_at = %q after a Write without it", v)
	}
}
