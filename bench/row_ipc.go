package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/redisipc"
)

// runIPC measures a cluster→service call through services.Run (a service
// copy in its own process) against Redis PING and against a bare streams
// round trip (bare.go: the same XADD → XREADGROUP → XADD+XACK → XREAD with
// no framework), sequentially, samples interleaved, and with many calls in
// flight.
func runIPC(e *env) error {
	ctx := e.ctx
	ks := keyspace.MustNew("bench-ipc")
	purge(ctx, e.rdb, ks)
	defer purge(context.Background(), e.rdb, ks)
	if err := bareSetup(ctx, e.rdb, ks); err != nil {
		return err
	}
	svc, err := startChild(ctx, roleIPCService, envRedis+"="+e.url, envNS+"="+ks.Namespace())
	if err != nil {
		return err
	}
	defer stopChild(svc)
	node, err := redisipc.New(ctx, redisipc.Options{Redis: e.rdb, Keys: ks, Addr: "cluster:0"})
	if err != nil {
		return err
	}
	defer node.Close(context.Background())
	body := []byte(`"` + strings.Repeat("x", 62) + `"`)
	ping := func() error { return e.rdb.Ping(ctx).Err() }
	call := func() error {
		_, err := node.Call(ctx, "service:echo", "echo", body)
		return err
	}
	seq := newBareSeq(e.rdb, ks, body)
	bare := func() error { return seq.call(ctx) }
	pipe := newBarePipe(ctx, e.rdb, ks, body)
	barePiped := func() error { return pipe.call(ctx) }
	for range min(2000, e.cfg.ipcSamples) { // warm up connections and code paths
		for _, f := range []func() error{call, bare, ping} {
			if err := f(); err != nil {
				return fmt.Errorf("warm-up: %w", err)
			}
		}
	}
	progress("ipc: %d sequential samples each of PING, call, bare", e.cfg.ipcSamples)
	l, err := interleaved(e.cfg.ipcSamples, ping, call, bare)
	if err != nil {
		return err
	}
	pl, cl, bl := l[0], l[1], l[2]
	e.add(Figure{Row: "ipc", Name: "Redis PING round trip", Value: pl.us50(), P99: pl.us99(), Unit: "µs"})
	e.add(Figure{Row: "ipc", Name: "cluster→service call, sequential", Value: cl.us50(), P99: cl.us99(), Unit: "µs",
		Baseline: "PING p50", BaselineValue: pl.us50(), Ratio: cl.us50() / pl.us50(),
		Target: "p50 ≤ 2.5× PING", Met: met(cl.us50() <= 2.5*pl.us50())})
	e.add(Figure{Row: "ipc", Name: "bare streams round trip, sequential", Value: bl.us50(), P99: bl.us99(), Unit: "µs",
		Baseline: "PING p50", BaselineValue: pl.us50(), Ratio: bl.us50() / pl.us50()})

	// Throughput: call and bare alternate, three samples each.
	k := e.cfg.inflight
	var callRates, bareRates, ratios, cmdsPerCall, cmdsPerBare []float64
	var callLat lat
	for i := range 3 {
		progress("ipc: throughput sample %d of 3, %d in flight", i+1, k)
		c0, t0 := commandsProcessed(ctx, e.rdb), time.Now()
		cr, l, err := throughput(ctx, k, e.cfg.ipcDuration, call)
		if err != nil {
			return err
		}
		cmdsPerCall = append(cmdsPerCall, float64(commandsProcessed(ctx, e.rdb)-c0-1)/(cr*time.Since(t0).Seconds()))
		c0, t0 = commandsProcessed(ctx, e.rdb), time.Now()
		br, _, err := throughput(ctx, k, e.cfg.ipcDuration, barePiped)
		if err != nil {
			return err
		}
		cmdsPerBare = append(cmdsPerBare, float64(commandsProcessed(ctx, e.rdb)-c0-1)/(br*time.Since(t0).Seconds()))
		callRates, bareRates, ratios = append(callRates, cr), append(bareRates, br), append(ratios, cr/br)
		if i == 0 {
			callLat = l
		}
	}
	cr, br, ratio := median(callRates), median(bareRates), median(ratios)
	e.add(Figure{Row: "ipc", Name: fmt.Sprintf("cluster→service calls/s, %d in flight", k), Value: cr, Unit: "req/s",
		Baseline: "bare streams", BaselineValue: br, Ratio: ratio,
		Target: "≥ 1.3× bare", Met: met(ratio >= 1.3)})
	e.add(Figure{Row: "ipc", Name: fmt.Sprintf("Redis commands per call, %d in flight", k), Value: median(cmdsPerCall), Unit: "",
		Baseline: "bare streams", BaselineValue: median(cmdsPerBare), Ratio: median(cmdsPerCall) / median(cmdsPerBare)})
	e.add(Figure{Row: "ipc", Name: fmt.Sprintf("call latency, %d in flight", k), Value: callLat.us50(), P99: callLat.us99(), Unit: "µs"})
	return nil
}
