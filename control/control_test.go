package control_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/megane-go/megane/control"
	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/redisipc"
)

// fakeLauncher serves the control ops the way the launcher does, recording
// the requests it decoded.
func fakeLauncher(t *testing.T) (caller *redisipc.Node, got chan any) {
	t.Helper()
	_, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("test")
	ctx := context.Background()
	l, err := redisipc.New(ctx, redisipc.Options{Redis: rdb, Keys: ks, Addr: control.Addr})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Close(context.Background()) })
	got = make(chan any, 8)
	st := control.Status{Namespace: "test", ShardCount: 2, Clusters: []control.ClusterStatus{
		{ID: 0, Shards: []int{0, 1}, ProcessStatus: control.ProcessStatus{State: control.StateReady, PID: 7}},
	}}
	l.Handle(control.OpStatus, func(context.Context, *redisipc.Request) ([]byte, error) {
		got <- nil
		return json.Marshal(st)
	})
	l.Handle(control.OpRollingRestart, func(_ context.Context, req *redisipc.Request) ([]byte, error) {
		var in control.RollingRestartRequest
		if err := req.Decode(&in); err != nil {
			return nil, err
		}
		got <- in
		return json.Marshal(control.RollingRestartReply{Status: st, Steps: []control.RollStep{{Processes: []string{"cluster 0"}, Resumed: 4}}})
	})
	l.Handle(control.OpRestartCluster, func(_ context.Context, req *redisipc.Request) ([]byte, error) {
		var in control.RestartClusterRequest
		if err := req.Decode(&in); err != nil {
			return nil, err
		}
		if err := control.CheckVersion(in.V); err != nil {
			return nil, err
		}
		got <- in
		return json.Marshal(st.Clusters[in.Cluster])
	})
	l.Handle(control.OpRestartService, func(_ context.Context, req *redisipc.Request) ([]byte, error) {
		var in control.RestartServiceRequest
		if err := req.Decode(&in); err != nil {
			return nil, err
		}
		got <- in
		return json.Marshal([]control.ServiceStatus{{Name: in.Service, ProcessStatus: control.ProcessStatus{State: control.StateReady}}})
	})
	l.Handle(control.OpShutdown, func(context.Context, *redisipc.Request) ([]byte, error) {
		got <- nil
		return json.Marshal(control.ShutdownReply{OK: true})
	})
	caller, err = redisipc.New(ctx, redisipc.Options{Redis: rdb, Keys: ks, Addr: "cli:test"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = caller.Close(context.Background()) })
	return caller, got
}

func TestClientSendsTypedRequests(t *testing.T) {
	n, got := fakeLauncher(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	st, err := control.FetchStatus(ctx, n)
	if err != nil || st.ShardCount != 2 || len(st.Clusters) != 1 || st.Clusters[0].State != control.StateReady {
		t.Fatalf("FetchStatus = %+v, %v", st, err)
	}
	<-got

	cs, err := control.RestartCluster(ctx, n, 0)
	if err != nil || cs.PID != 7 {
		t.Fatalf("RestartCluster = %+v, %v", cs, err)
	}
	if in := <-got; in != (control.RestartClusterRequest{V: control.Version, Cluster: 0}) {
		t.Errorf("launcher decoded %+v", in)
	}

	tests := []struct {
		name     string
		copyN    int
		wantCopy *int
	}{
		{"every copy", control.AllCopies, nil},
		{"one copy", 1, new(int)},
	}
	*tests[1].wantCopy = 1
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := control.RestartService(ctx, n, "echo", tt.copyN)
			if err != nil || len(out) != 1 || out[0].Name != "echo" {
				t.Fatalf("RestartService = %+v, %v", out, err)
			}
			in := (<-got).(control.RestartServiceRequest)
			if in.V != control.Version || in.Service != "echo" || (in.Copy == nil) != (tt.wantCopy == nil) ||
				(in.Copy != nil && *in.Copy != *tt.wantCopy) {
				t.Errorf("launcher decoded %+v", in)
			}
		})
	}

	rep, err := control.RollingRestart(ctx, n, control.RollingRestartRequest{Parallel: 2})
	if err != nil {
		t.Fatal(err)
	}
	if in := (<-got).(control.RollingRestartRequest); in.V != control.Version || in.Parallel != 2 {
		t.Errorf("launcher decoded %+v", in)
	}
	if len(rep.Steps) != 1 || rep.Steps[0].Resumed != 4 || rep.Namespace != st.Namespace {
		t.Errorf("rolling restart reply %+v", rep)
	}
	if err := control.Shutdown(ctx, n); err != nil {
		t.Fatal(err)
	}
	<-got
}

func TestNoLauncher(t *testing.T) {
	_, rdb := testredis.Mini(t)
	n, err := redisipc.New(context.Background(), redisipc.Options{Redis: rdb, Keys: keyspace.MustNew("test"), Addr: "cli:test"})
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close(context.Background())
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := control.FetchStatus(ctx, n); !errors.Is(err, redisipc.ErrNoResponders) {
		t.Fatalf("FetchStatus without a launcher: %v, want ErrNoResponders", err)
	}
}

func TestCheckVersion(t *testing.T) {
	for _, v := range []int{0, 1, control.Version} {
		if err := control.CheckVersion(v); err != nil {
			t.Errorf("CheckVersion(%d) = %v", v, err)
		}
	}
	if err := control.CheckVersion(control.Version + 1); !errors.Is(err, control.ErrVersion) {
		t.Errorf("CheckVersion(newer) = %v, want ErrVersion", err)
	}
}

// A request sent before requests carried a version still decodes.
func TestUnversionedRequestDecodes(t *testing.T) {
	var in control.RestartClusterRequest
	if err := json.Unmarshal([]byte(`{"cluster":3}`), &in); err != nil || in.Cluster != 3 || control.CheckVersion(in.V) != nil {
		t.Fatalf("decoded %+v, %v", in, err)
	}
}
