package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/control"
	"github.com/megane-go/megane/redisipc"
)

// TestRestartServiceCallsTheLauncher: restart-service sends the launcher's
// op with the service name, and the copy only when one is given.
func TestRestartServiceCallsTheLauncher(t *testing.T) {
	addr, ks := seed(t)
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	defer rdb.Close()
	node, err := redisipc.New(context.Background(), redisipc.Options{Redis: rdb, Keys: ks, Addr: redisipc.KindLauncher})
	if err != nil {
		t.Fatal(err)
	}
	defer node.Close(context.Background())
	got := make(chan map[string]any, 2)
	node.Handle(control.OpRestartService, func(_ context.Context, req *redisipc.Request) ([]byte, error) {
		var in map[string]any
		if err := req.Decode(&in); err != nil {
			return nil, err
		}
		got <- in
		return []byte(`[{"name":"echo","copy":0,"state":"ready","pid":42}]`), nil
	})

	out, err := run(t, addr, "restart-service", "echo")
	if err != nil || !strings.Contains(out, `"state": "ready"`) {
		t.Fatalf("restart-service = %q, %v", out, err)
	}
	if in := <-got; in["service"] != "echo" || in["copy"] != nil || in["v"] != float64(control.Version) {
		t.Errorf("payload %v, want the version, the service and no copy", in)
	}
	if _, err := run(t, addr, "restart-service", "--copy", "1", "echo"); err != nil {
		t.Fatal(err)
	}
	in := <-got
	if b, _ := json.Marshal(in); in["copy"] != float64(1) {
		t.Errorf("payload %s, want copy 1", b)
	}
	if _, err := run(t, addr, "restart-service"); err == nil || !strings.Contains(err.Error(), "usage") {
		t.Errorf("restart-service without a name: %v", err)
	}
}
