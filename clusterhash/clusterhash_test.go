package clusterhash

import (
	"context"
	"reflect"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
)

func newRedis(t *testing.T) (redis.UniversalClient, keyspace.Keyspace) {
	t.Helper()
	mr := miniredis.RunT(t)
	rdb := redis.NewClient(&redis.Options{Addr: mr.Addr()})
	t.Cleanup(func() { _ = rdb.Close() })
	return rdb, keyspace.MustNew("test")
}

func hash(t *testing.T, rdb redis.UniversalClient) map[string]string {
	t.Helper()
	h, err := rdb.HGetAll(context.Background(), "megane:test:cluster:1").Result()
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestLifecycleLayout(t *testing.T) {
	ctx := context.Background()
	rdb, ks := newRedis(t)
	start := time.UnixMilli(1_700_000_000_000)
	proc := Process{PID: 42, Host: "h", Shards: []int{2, 3}, ShardCount: 4, StartedAt: start}

	// What an earlier process and the launcher left behind.
	rdb.HSet(ctx, ks.Cluster(1), "ready_at", "1", "stopped_at", "2", "supervisor", "starting", "restarts", "1")
	pipe := rdb.Pipeline()
	Register(ctx, pipe, ks, 1, proc)
	if _, err := pipe.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"status": "starting", "pid": "42", "host": "h", "shards": "2,3", "shard_count": "4",
		"started_at": "1700000000000", "supervisor": "starting", "restarts": "1",
	}
	if got := hash(t, rdb); !reflect.DeepEqual(got, want) {
		t.Fatalf("after Register: %v, want %v", got, want)
	}

	if err := SetReady(ctx, rdb, ks, 1, start.Add(time.Second)).Err(); err != nil {
		t.Fatal(err)
	}
	want["status"], want["ready_at"] = "ready", "1700000001000"
	if got := hash(t, rdb); !reflect.DeepEqual(got, want) {
		t.Fatalf("after SetReady: %v, want %v", got, want)
	}

	if err := SetStatus(ctx, rdb, ks, 1, StatusStopping).Err(); err != nil {
		t.Fatal(err)
	}
	if err := SetStopped(ctx, rdb, ks, 1, "stopped", start.Add(2*time.Second)).Err(); err != nil {
		t.Fatal(err)
	}
	want["status"], want["stopped_at"] = "stopped", "1700000002000"
	if got := Get(ctx, rdb, ks, 1).Val(); !reflect.DeepEqual(got, want) {
		t.Fatalf("after SetStopped: %v, want %v", got, want)
	}
}

func TestRewrite(t *testing.T) {
	ctx := context.Background()
	start := time.UnixMilli(1_700_000_000_000)
	proc := Process{PID: 7, Host: "h", Shards: []int{0}, ShardCount: 2, StartedAt: start}
	tests := []struct {
		name    string
		readyAt time.Time
		want    map[string]string
	}{
		{"starting", time.Time{}, map[string]string{
			"status": "starting", "pid": "7", "host": "h", "shards": "0", "shard_count": "2", "started_at": "1700000000000"}},
		{"ready", start.Add(time.Second), map[string]string{
			"status": "ready", "pid": "7", "host": "h", "shards": "0", "shard_count": "2", "started_at": "1700000000000",
			"ready_at": "1700000001000"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rdb, ks := newRedis(t)
			if HasProcess(ctx, rdb, ks, 1).Val() {
				t.Fatal("HasProcess on an empty Redis")
			}
			if err := Rewrite(ctx, rdb, ks, 1, proc, tt.readyAt).Err(); err != nil {
				t.Fatal(err)
			}
			if got := hash(t, rdb); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("HGETALL = %v, want %v", got, tt.want)
			}
			if !HasProcess(ctx, rdb, ks, 1).Val() {
				t.Fatal("HasProcess after Rewrite")
			}
		})
	}
}

func TestSetSupervision(t *testing.T) {
	ctx := context.Background()
	tests := []struct {
		name string
		sup  Supervision
		want map[string]string
	}{
		{"running", Supervision{State: "ready", Restarts: 2, Running: true},
			map[string]string{"supervisor": "ready", "restarts": "2", "status": "ready", "pid": "42"}},
		{"no process", Supervision{State: "backoff", Restarts: 3},
			map[string]string{"supervisor": "backoff", "restarts": "3", "status": "backoff", "pid": "0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rdb, ks := newRedis(t)
			rdb.HSet(ctx, ks.Cluster(1), "status", "ready", "pid", "42")
			if HasSupervision(ctx, rdb, ks, 1).Val() {
				t.Fatal("HasSupervision before SetSupervision")
			}
			if err := SetSupervision(ctx, rdb, ks, 1, tt.sup).Err(); err != nil {
				t.Fatal(err)
			}
			if got := hash(t, rdb); !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("HGETALL = %v, want %v", got, tt.want)
			}
			if !HasSupervision(ctx, rdb, ks, 1).Val() {
				t.Fatal("HasSupervision after SetSupervision")
			}
			if err := Delete(ctx, rdb, ks, 1).Err(); err != nil {
				t.Fatal(err)
			}
			if len(hash(t, rdb)) != 0 {
				t.Fatal("Delete left the hash")
			}
		})
	}
}
