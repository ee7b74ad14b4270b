package cli

import (
	"encoding/json"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	ucli "github.com/urfave/cli/v2"

	"github.com/megane-go/megane/clusterhash"
	"github.com/megane-go/megane/inspect"
	"github.com/megane-go/megane/lifecycle"
	"github.com/megane-go/megane/redisconn"
	"github.com/megane-go/megane/redisipc"
	"github.com/megane-go/megane/shardmap"
	"github.com/megane-go/megane/stats"
)

func cmdNamespaces(c *ucli.Context) error {
	rdb, err := redisconn.Open(c.Context, c.String("redis"))
	if err != nil {
		return err
	}
	defer rdb.Close()
	found, err := inspect.Namespaces(c.Context, rdb)
	if err != nil {
		return err
	}
	if c.Bool("json") {
		return json.NewEncoder(c.App.Writer).Encode(found)
	}
	for _, ns := range found {
		fmt.Fprintln(c.App.Writer, ns)
	}
	return nil
}

var cmdStatus = withEnv(func(c *ucli.Context, e *env) error {
	ov, err := inspect.New(e.rdb, e.ks).Overview(c.Context)
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(typedStatus(ov))
	}
	now := time.Now()
	fmt.Fprintf(e.out, "namespace %s   shards %d   max_concurrency %d   session starts %d/%d left",
		ov.Namespace, ov.ShardCount, ov.Gateway.MaxConcurrency, ov.Gateway.Remaining, ov.Gateway.Total)
	if !ov.Gateway.ResetAt.IsZero() {
		fmt.Fprintf(e.out, " (reset in %s)", time.Until(ov.Gateway.ResetAt).Round(time.Second))
	}
	fmt.Fprintln(e.out)
	coop := len(ov.Launchers) > 0
	if l := ov.Launcher; l != nil && !coop {
		pid, up := "-", "-"
		if l.PID > 0 {
			pid = strconv.Itoa(l.PID)
		}
		if !l.StartedAt.IsZero() {
			up = now.Sub(l.StartedAt).Round(time.Second).String()
		}
		fmt.Fprintf(e.out, "launcher pid %s on %s, status %s, up %s\n", pid, orDash(l.Host), orDash(l.Status), up)
	}
	if coop {
		fmt.Fprintln(e.out)
		w := e.table()
		fmt.Fprintln(w, "LAUNCHER\tHOST\tPID\tCAPACITY\tOWNS\tUP")
		for _, l := range ov.Launchers {
			fmt.Fprintf(w, "%s\t%s\t%d\t%d\t%s\t%s\n", l.ID, orDash(l.Host), l.PID, l.Capacity, orDash(shardmap.FormatRanges(l.Owned)),
				now.Sub(l.StartedAt).Round(time.Second))
		}
		_ = w.Flush()
	}
	fmt.Fprintln(e.out)
	w := e.table()
	header := "CLUSTER\tSTATUS\tALIVE\tPID\tSHARDS\tRESTARTS\tUP"
	if coop {
		header += "\tOWNER"
	}
	fmt.Fprintln(w, header)
	var unowned []string
	for _, cl := range ov.Clusters {
		fmt.Fprintf(w, "%d\t%s\t%v\t%s\t%s\t%s\t%s", cl.ID, orDash(cl.Status), cl.Alive, orDash(cl.Fields[clusterhash.FieldPID]),
			orDash(shardmap.FormatRanges(cl.Shards)), orDash(cl.Fields[clusterhash.FieldRestarts]), inspect.Age(cl.Fields, clusterhash.FieldStartedAt, now))
		switch {
		case cl.Unowned:
			fmt.Fprint(w, "\tNONE (unowned)")
			unowned = append(unowned, strconv.Itoa(cl.ID))
		case coop:
			fmt.Fprint(w, "\t", cl.Owner)
		}
		fmt.Fprintln(w)
	}
	_ = w.Flush()
	if len(unowned) > 0 {
		fmt.Fprintf(e.out, "\nWARNING: clusters %s have no launcher: their shards are offline. Start another launcher or raise MEGANE_CLUSTERS.\n",
			strings.Join(unowned, ", "))
	}
	fmt.Fprintln(e.out)
	w = e.table()
	fmt.Fprintln(w, "SHARD\tCLUSTER\tSTATUS\tGUILDS\tLATENCY\tSESSION\tSEQ\tSAVED")
	for _, s := range ov.Shards {
		sess, seq, saved := "-", "-", "-"
		if s.Session.SessionID != "" {
			sess = s.Session.SessionID
			if len(sess) > 12 {
				sess = sess[:12] + "…"
			}
			seq = strconv.Itoa(s.Session.Sequence)
			saved = now.Sub(s.Session.UpdatedAt).Round(time.Second).String()
		}
		guilds := "-"
		if s.Guilds >= 0 {
			guilds = strconv.Itoa(s.Guilds)
		}
		fmt.Fprintf(w, "%d\t%d\t%s\t%s\t%dms\t%s\t%s\t%s ago\n", s.ID, s.Cluster, orDash(s.Status), guilds, s.LatencyMS, sess, seq, saved)
	}
	return w.Flush()
})

var cmdNodes = withEnv(func(c *ucli.Context, e *env) error {
	nodes, err := redisipc.LiveNodes(c.Context, e.rdb, e.ks)
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(nodes)
	}
	w := e.table()
	fmt.Fprintln(w, "ADDRESS\tINSTANCE\tPID\tHOST\tUP")
	for _, n := range nodes {
		fmt.Fprintf(w, "%s\t%s\t%d\t%s\t%s\n", n.Addr, n.Instance, n.PID, n.Host, time.Since(n.StartedAt).Round(time.Second))
	}
	return w.Flush()
})

var cmdStats = withEnv(func(c *ucli.Context, e *env) error {
	if c.Bool("watch") {
		return watchStats(c, e)
	}
	return printStats(c, e)
})

// printStats prints every process's statistics once.
func printStats(c *ucli.Context, e *env) error {
	reports, err := stats.ReadAll(c.Context, e.rdb, e.ks, 0)
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(reports)
	}
	if len(reports) == 0 {
		fmt.Fprintln(e.out, "no process has reported statistics (they report every few seconds while running)")
		return nil
	}
	// Built-in columns first, then every custom field any process reports.
	cols := []string{"cpu_percent", "rss_bytes", "heap_bytes", "goroutines", "uptime_seconds"}
	known := map[string]bool{"pid": true, "host": true, "updated_at": true, "gc_cycles": true}
	for _, c := range cols {
		known[c] = true
	}
	var custom []string
	for _, r := range reports {
		for f, v := range r.Fields {
			if !known[f] && !structured(v) {
				known[f] = true
				custom = append(custom, f)
			}
		}
	}
	sort.Strings(custom)
	cols = append(cols, custom...)
	w := e.table()
	fmt.Fprint(w, "PROCESS\tPID")
	for _, c := range cols {
		fmt.Fprint(w, "\t", strings.ToUpper(c))
	}
	fmt.Fprintln(w)
	for _, r := range reports {
		fmt.Fprintf(w, "%s\t%s", r.Name, orDash(r.Text("pid")))
		for _, c := range cols {
			v := r.Text(c)
			if n, ok := r.Float(c); ok && strings.HasSuffix(c, "_bytes") {
				v = fmt.Sprintf("%.1fMiB", n/(1<<20))
			}
			fmt.Fprint(w, "\t", orDash(v))
		}
		fmt.Fprintln(w)
	}
	return w.Flush()
}

var cmdEvents = withEnv(func(c *ucli.Context, e *env) error {
	n := c.Int("count")
	// Read the last n entries: XREVRANGE through Read is not offered, so
	// read from the start and keep the tail (the stream is capped).
	var all []lifecycle.Event
	after := ""
	for {
		evs, next, err := lifecycle.Read(c.Context, e.rdb, e.ks, after, 1000)
		if err != nil {
			return err
		}
		all = append(all, evs...)
		if len(all) > n {
			all = all[len(all)-n:]
		}
		if len(evs) == 0 || next == after {
			break
		}
		after = next
	}
	for _, ev := range all {
		if err := e.printEvent(ev); err != nil {
			return err
		}
	}
	if !c.Bool("follow") {
		return nil
	}
	for {
		evs, next, err := lifecycle.Follow(c.Context, e.rdb, e.ks, after, 100, 5*time.Second)
		if err != nil {
			if c.Context.Err() != nil {
				return nil
			}
			return err
		}
		for _, ev := range evs {
			if err := e.printEvent(ev); err != nil {
				return err
			}
		}
		after = next
	}
})

func (e *env) printEvent(ev lifecycle.Event) error {
	if e.json {
		return json.NewEncoder(e.out).Encode(ev)
	}
	who := ""
	if ev.Cluster >= 0 {
		who += fmt.Sprintf(" cluster=%d", ev.Cluster)
	}
	if ev.Shard >= 0 {
		who += fmt.Sprintf(" shard=%d", ev.Shard)
	}
	if ev.Service != "" {
		who += " service=" + ev.Service
	}
	detail := ""
	if ev.Detail != "" {
		detail = "  " + ev.Detail
	}
	_, err := fmt.Fprintf(e.out, "%s  %-20s%s%s\n", ev.At.Format("15:04:05.000"), ev.Type, who, detail)
	return err
}

var cmdDeadLetter = withEnv(func(c *ucli.Context, e *env) error {
	msgs, err := e.rdb.XRevRangeN(c.Context, e.ks.DeadLetter(), "+", "-", int64(c.Int("count"))).Result()
	if err != nil {
		return err
	}
	if e.json {
		return e.printJSON(msgs)
	}
	for _, m := range msgs {
		keys := make([]string, 0, len(m.Values))
		for k := range m.Values {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		fmt.Fprintf(e.out, "%s", m.ID)
		for _, k := range keys {
			v := fmt.Sprint(m.Values[k])
			if len(v) > 80 {
				v = v[:80] + "…"
			}
			fmt.Fprintf(e.out, "  %s=%q", k, v)
		}
		fmt.Fprintln(e.out)
	}
	return nil
})

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
