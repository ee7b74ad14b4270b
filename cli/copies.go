package cli

import (
	"context"
	"strings"

	"github.com/megane-go/megane/redisipc"
	"github.com/megane-go/megane/stats"
)

// copyLabels maps the instance of every live service node to
// "service:<name>#<copy>": the copies of a service share one address, so
// their answers to a gather or eval would otherwise look alike. A copy is
// known by the pid and host it publishes in its statistics
// (stats:service:<name>:<copy>).
func (e *env) copyLabels(ctx context.Context) map[string]string {
	nodes, err := redisipc.LiveNodes(ctx, e.rdb, e.ks)
	if err != nil {
		return nil
	}
	reports, err := stats.ReadAll(ctx, e.rdb, e.ks, 0)
	if err != nil {
		return nil
	}
	type where struct {
		addr, host string
		pid        int64
	}
	copies := map[where]string{}
	for _, r := range reports {
		parts := strings.Split(r.Name, ":")
		if len(parts) != 3 || parts[0] != redisipc.KindService {
			continue
		}
		pid, _ := r.Int("pid")
		copies[where{"service:" + parts[1], r.Text("host"), pid}] = "service:" + parts[1] + "#" + parts[2]
	}
	out := map[string]string{}
	for _, n := range nodes {
		if l, ok := copies[where{n.Addr, n.Host, int64(n.PID)}]; ok {
			out[n.Instance] = l
		}
	}
	return out
}

// nameCopies rewrites the answers of service copies in g to name the copy
// (service:counter#1), and lists silent copies by name too. An answer of a
// copy whose statistics are not published yet keeps its address and gets
// its instance, so two copies never look alike.
func nameCopies(g *redisipc.Gathered, labels map[string]string) {
	perAddr := map[string]int{}
	for _, a := range g.Answers {
		perAddr[a.From]++
	}
	for i, a := range g.Answers {
		if !strings.HasPrefix(a.From, redisipc.KindService+":") {
			continue
		}
		if l, ok := labels[a.Instance]; ok {
			g.Answers[i].From = l
		} else if perAddr[a.From] > 1 {
			g.Answers[i].From = a.From + " (" + a.Instance + ")"
		}
	}
	named := map[string]bool{}
	var missing []string
	for _, inst := range g.MissingInstances {
		if l, ok := labels[inst]; ok {
			missing = append(missing, l)
			named[l[:strings.IndexByte(l, '#')]] = true
		}
	}
	for _, m := range g.Missing {
		if !named[m] {
			missing = append(missing, m)
		}
	}
	g.Missing = missing
}
