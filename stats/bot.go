package stats

import (
	"cmp"
	"context"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
)

// Bot is the statistics of every process of one bot, grouped by role: what
// Megane's master aggregated from its clusters' stats messages.
type Bot struct {
	// Launcher is the launcher's report, nil while it has none.
	Launcher *Report `json:"launcher,omitempty"`
	// Clusters are the clusters' reports in cluster id order.
	Clusters []Report `json:"clusters"`
	// Services holds each service's copies' reports in copy order.
	Services map[string][]Report `json:"services"`
	// Others are reports under names of none of the roles above (a
	// Reporter of your own).
	Others []Report `json:"others,omitempty"`
}

// ReadBot reads every process's report (as ReadAll, with the same maxAge)
// and groups them by role.
func ReadBot(ctx context.Context, rdb redis.UniversalClient, ks keyspace.Keyspace, maxAge time.Duration) (Bot, error) {
	reports, err := ReadAll(ctx, rdb, ks, maxAge)
	if err != nil {
		return Bot{}, err
	}
	return GroupByRole(reports), nil
}

// GroupByRole sorts reports (from ReadAll) into a Bot.
func GroupByRole(reports []Report) Bot {
	b := Bot{Services: map[string][]Report{}}
	for _, r := range reports {
		switch parts := strings.Split(r.Name, ":"); {
		case r.Name == "launcher":
			r := r
			b.Launcher = &r
		case parts[0] == "cluster" && len(parts) == 2:
			b.Clusters = append(b.Clusters, r)
		case parts[0] == "service" && len(parts) == 3:
			b.Services[parts[1]] = append(b.Services[parts[1]], r)
		default:
			b.Others = append(b.Others, r)
		}
	}
	// ReadAll sorts by name, which puts cluster:10 before cluster:2.
	byLastNumber := func(a, b Report) int {
		return cmp.Or(cmp.Compare(lastNumber(a.Name), lastNumber(b.Name)), strings.Compare(a.Name, b.Name))
	}
	slices.SortFunc(b.Clusters, byLastNumber)
	for _, copies := range b.Services {
		slices.SortFunc(copies, byLastNumber)
	}
	return b
}

func lastNumber(name string) int {
	n, err := strconv.Atoi(name[strings.LastIndexByte(name, ':')+1:])
	if err != nil {
		return -1
	}
	return n
}

// Sum adds up the numeric field of reports, skipping those where it is
// absent or not a number: Sum(b.Clusters, "guilds") is the bot's guild
// count.
func Sum(reports []Report, field string) float64 {
	var total float64
	for _, r := range reports {
		if v, ok := r.Float(field); ok {
			total += v
		}
	}
	return total
}
