package main

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"
)

// Figure is one line of the table: a measured value, its p99 when it is a
// latency, the baseline it is compared with (measured in the same run), the
// ratio, and the target it is held to.
type Figure struct {
	// Row is the row (-only name) that measured the figure.
	Row string `json:"row"`
	// Name says what was measured.
	Name string `json:"name"`
	// Value is the median (or the single value), in Unit.
	Value float64 `json:"value"`
	// P99 is the 99th percentile of a latency; zero otherwise.
	P99 float64 `json:"p99,omitempty"`
	// Unit is the unit of Value, P99 and BaselineValue.
	Unit string `json:"unit"`
	// Baseline names the same-run baseline; empty when there is none.
	Baseline string `json:"baseline,omitempty"`
	// BaselineValue is the baseline's value, in Unit.
	BaselineValue float64 `json:"baseline_value,omitempty"`
	// Ratio is Value ÷ BaselineValue (or the figure's own ratio); zero when
	// there is none.
	Ratio float64 `json:"ratio,omitempty"`
	// Target is the goal, as text; empty when the figure has none.
	Target string `json:"target,omitempty"`
	// Met says whether the target is met; nil when there is no target.
	Met *bool `json:"met,omitempty"`
}

// Report is the whole run: its conditions, the figures and the notes.
type Report struct {
	Date       string   `json:"date"`
	Machine    string   `json:"machine"`
	Cores      int      `json:"cores"`
	Redis      string   `json:"redis"`
	LoadAvg    string   `json:"load_average"`
	Elapsed    string   `json:"elapsed"`
	Figures    []Figure `json:"figures"`
	Notes      []string `json:"notes,omitempty"`
	FailedRows []string `json:"failed_rows,omitempty"`
}

// met returns a pointer to ok, for Figure.Met.
func met(ok bool) *bool { return &ok }

// fmtValue renders v in unit u compactly.
func fmtValue(v float64, u string) string {
	switch u {
	case "s":
		return time.Duration(v * float64(time.Second)).Round(time.Millisecond).String()
	case "µs":
		return fmt.Sprintf("%.1f µs", v)
	case "%":
		return fmt.Sprintf("%.0f %%", v)
	case "MiB":
		return fmt.Sprintf("%.1f MiB", v)
	case "":
		return trimFloat(v)
	}
	return trimFloat(v) + " " + u
}

func trimFloat(v float64) string {
	switch {
	case v >= 1000:
		return groupThousands(fmt.Sprintf("%.0f", v))
	case v >= 100:
		return fmt.Sprintf("%.0f", v)
	case v >= 10:
		return fmt.Sprintf("%.1f", v)
	}
	return fmt.Sprintf("%.2f", v)
}

func groupThousands(s string) string {
	if len(s) <= 3 {
		return s
	}
	var b strings.Builder
	lead := len(s) % 3
	if lead > 0 {
		b.WriteString(s[:lead])
	}
	for i := lead; i < len(s); i += 3 {
		if b.Len() > 0 {
			b.WriteString(" ")
		}
		b.WriteString(s[i : i+3])
	}
	return b.String()
}

// writeTable prints the report as a Markdown table (readable as it is in a
// terminal, and pasted into the README as it is).
func writeTable(w io.Writer, r Report) error {
	fmt.Fprintf(w, "Megane benchmarks — %s, %s, %d cores, redis-server %s, load average %s, %s\n\n",
		r.Date, r.Machine, r.Cores, r.Redis, r.LoadAvg, r.Elapsed)
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprintln(tw, "| row\t| figure\t| median\t| p99\t| baseline (same run)\t| ratio\t| target\t| met\t|")
	fmt.Fprintln(tw, "|---\t|---\t|---\t|---\t|---\t|---\t|---\t|---\t|")
	for _, f := range r.Figures {
		p99, base, ratio, m := "", "", "", ""
		if f.P99 != 0 {
			p99 = fmtValue(f.P99, f.Unit)
		}
		if f.Baseline != "" {
			base = f.Baseline
			if f.BaselineValue != 0 {
				base += " " + fmtValue(f.BaselineValue, f.Unit)
			}
		}
		if f.Ratio != 0 {
			ratio = fmt.Sprintf("%.2f×", f.Ratio)
		}
		if f.Met != nil {
			m = "not met"
			if *f.Met {
				m = "met"
			}
		}
		fmt.Fprintf(tw, "| %s\t| %s\t| %s\t| %s\t| %s\t| %s\t| %s\t| %s\t|\n",
			f.Row, f.Name, fmtValue(f.Value, f.Unit), p99, base, ratio, f.Target, m)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(r.FailedRows) > 0 {
		fmt.Fprintf(w, "\nrows that failed: %s\n", strings.Join(r.FailedRows, ", "))
	}
	if len(r.Notes) > 0 {
		fmt.Fprintln(w)
		for _, n := range r.Notes {
			fmt.Fprintln(w, n)
		}
	}
	return nil
}

// writeJSON prints the report as one JSON document.
func writeJSON(w io.Writer, r Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}
