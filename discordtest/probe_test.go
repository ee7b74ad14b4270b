package discordtest

import (
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/disgoorg/disgo/gateway"

	"github.com/megane-go/megane/internal/testproc"
	"github.com/megane-go/megane/internal/testwait"
)

// probebot is the disgo probe bot. disgo's gateway has data races, so real
// disgo clients run as separate processes built without -race.
var probebot = &testproc.Binary{Pkg: "./internal/probebot"}

func TestMain(m *testing.M) {
	os.Exit(testproc.Run(m, probebot))
}

// probeEvent is one JSON line printed by the probe bot.
type probeEvent struct {
	Ev        string `json:"ev"`
	T         string `json:"t"`
	Kind      string `json:"kind"`
	ID        string `json:"id"`
	Shard     int    `json:"shard"`
	Seq       int    `json:"seq"`
	GuildID   string `json:"guild_id"`
	ChannelID string `json:"channel_id"`
	Content   string `json:"content"`
	SessionID string `json:"session_id"`
	Err       string `json:"err"`
}

// probe is a running probe bot process.
type probe struct {
	*testproc.Proc
	name string
}

type probeConfig struct {
	shards       string // "0,1"
	count        int
	compression  string // zstd (default), zlib, none
	identifyWait time.Duration
	reply        bool
	intents      *gateway.Intents // nil: the probe's default, which has MESSAGE_CONTENT
}

func startProbe(t testing.TB, srv *Server, name string, cfg probeConfig) *probe {
	t.Helper()
	args := []string{"-token", srv.Token(), "-rest", srv.RESTURL(), "-log", "warn"}
	if cfg.shards != "" {
		args = append(args, "-shards", cfg.shards)
	}
	if cfg.count > 0 {
		args = append(args, "-count", fmt.Sprint(cfg.count))
	}
	if cfg.compression != "" {
		args = append(args, "-compression", cfg.compression)
	}
	if cfg.identifyWait > 0 {
		args = append(args, "-identify-wait", cfg.identifyWait.String())
	}
	if cfg.reply {
		args = append(args, "-reply")
	}
	if cfg.intents != nil {
		args = append(args, "-intents", fmt.Sprint(int64(*cfg.intents)))
	}
	p := testproc.Start(t, testproc.Spec{Name: "probe-" + name, Path: probebot.Path(t), Args: args})
	return &probe{Proc: p, name: name}
}

// snapshot returns the events printed so far.
func (p *probe) snapshot() []probeEvent {
	return testproc.Events[probeEvent](p.Proc)
}

func (p *probe) count(match func(probeEvent) bool) int {
	n := 0
	for _, ev := range p.snapshot() {
		if match(ev) {
			n++
		}
	}
	return n
}

// waitProbes waits until cond holds for the probes' output, failing on
// timeout or as soon as a probe reports an error.
func waitProbes(t testing.TB, what string, timeout time.Duration, probes []*probe, cond func() bool) {
	t.Helper()
	testwait.Problems(t, timeout, what, func() []string {
		if cond() {
			return nil
		}
		var problems []string
		for _, p := range probes {
			evs := p.snapshot()
			for _, ev := range evs {
				if ev.Ev == "error" {
					t.Fatalf("probe %s reported an error: %s", p.name, ev.Err)
				}
			}
			problems = append(problems, fmt.Sprintf("probe %s: %d events", p.name, len(evs)))
		}
		return problems
	})
}

func isEv(name string) func(probeEvent) bool {
	return func(ev probeEvent) bool { return ev.Ev == name }
}
