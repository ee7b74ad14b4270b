package launcher

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/megane-go/megane/clusterhash"
	"github.com/megane-go/megane/identify"
	"github.com/megane-go/megane/leases"
	"github.com/megane-go/megane/sessions"
	"github.com/megane-go/megane/shardmap"
	"github.com/megane-go/megane/shardstatus"
)

// planShards settles shard count, max_concurrency and cluster count from the
// config and GET /gateway/bot.
func (l *Launcher) planShards(ctx context.Context) error {
	cfg := &l.cfg
	gb, err := identify.FetchGatewayInfo(ctx, http.DefaultClient, cfg.RESTURL, cfg.Token)
	if err != nil {
		return fmt.Errorf("launcher: %w", err)
	}
	discordMC := gb.MaxConcurrency
	l.maxConcurrency = discordMC
	if cfg.MaxConcurrency > 0 {
		if cfg.MaxConcurrency > discordMC {
			return fmt.Errorf("%w: %s=%d is more than Discord's max_concurrency %d; Discord would reject the extra identifies",
				ErrInvalidConfig, envMaxConcurrency, cfg.MaxConcurrency, discordMC)
		}
		l.maxConcurrency = cfg.MaxConcurrency
	}
	l.shardCount = cfg.Shards
	if l.shardCount == 0 {
		l.shardCount = shardCount(gb.Shards, cfg.GuildsPerShard, cfg.LargeBotSharding, discordMC)
		if l.shardCount > maxShards {
			return fmt.Errorf("%w: Discord recommends %d shards, %d with %s=%d, more than the %d a launcher runs",
				ErrInvalidConfig, gb.Shards, l.shardCount, envGuildsPerShard, cfg.GuildsPerShard, maxShards)
		}
	}
	clusters := cfg.Clusters
	if cfg.TotalClusters > 0 {
		// Several launchers: the plan has TotalClusters; Clusters is this
		// launcher's capacity (settlePlan checks the shard count).
		clusters = cfg.TotalClusters
		if cfg.Clusters == 0 {
			cfg.Clusters = min(defaultClusters(), clusters)
		}
	} else {
		if clusters == 0 {
			clusters = min(defaultClusters(), l.shardCount)
		}
		if clusters > l.shardCount {
			return fmt.Errorf("%w: %d clusters for %d shards: a cluster needs at least one shard", ErrInvalidConfig, clusters, l.shardCount)
		}
		cfg.Clusters = clusters
	}
	l.totalClusters = clusters

	info := gb
	info.Shards, info.MaxConcurrency = l.shardCount, l.maxConcurrency
	info.MaxConcurrencyOverride = l.maxConcurrency != discordMC
	l.gateway = info // saved once the plan is settled (settlePlan)
	l.log.Info("gateway",
		slog.Int("shards", l.shardCount), slog.Int("recommended_shards", gb.Shards),
		slog.Int("clusters", clusters),
		slog.Int("max_concurrency", l.maxConcurrency), slog.Int("discord_max_concurrency", discordMC),
		slog.Int("session_starts_remaining", gb.Remaining),
		slog.Int("session_starts_total", gb.Total),
		slog.String("namespace", cfg.Namespace))
	return nil
}

func (l *Launcher) saveGateway(ctx context.Context) error {
	if err := identify.SaveGatewayInfo(ctx, l.rdb, l.ks, l.gateway); err != nil {
		return fmt.Errorf("launcher: save gateway info: %w", err)
	}
	return nil
}

func (l *Launcher) loadShardMap(ctx context.Context) (shardmap.Map, error) {
	m, err := shardmap.Load(ctx, l.rdb, l.ks)
	if err != nil {
		return m, fmt.Errorf("launcher: read shard map: %w", err)
	}
	return m, nil
}

// writeShardMap records which cluster owns which shard, replacing any older
// map in one transaction so routers never see a mix.
//
// A session belongs to one shard of one shard count: after a change of the
// shard count no saved session may be resumed, so all are dropped and every
// shard identifies.
func (l *Launcher) writeShardMap(ctx context.Context) error {
	stored, err := l.loadShardMap(ctx)
	if err != nil {
		return err
	}
	old := stored.ShardCount
	if old > 0 && old != l.shardCount {
		l.log.Warn("shard count changed: dropping every saved session, all shards identify",
			slog.Int("old_shard_count", old), slog.Int("shard_count", l.shardCount))
		for s := range max(old, l.shardCount) {
			if err := sessions.Delete(ctx, l.rdb, l.ks, s); err != nil {
				return fmt.Errorf("launcher: drop sessions of the old shard count: %w", err)
			}
		}
	}
	plan := l.plannedShardMap()
	clusters, oldClusters := plan.Clusters, stored.Clusters
	if err := shardmap.Save(ctx, l.rdb, l.ks, plan); err != nil {
		return fmt.Errorf("launcher: write shard map: %w", err)
	}
	// Clusters and shards the new plan no longer has would keep their
	// records forever: no process owns them any more.
	if oldClusters > clusters || old > l.shardCount {
		pipe := l.rdb.Pipeline()
		for c := clusters; c < oldClusters; c++ {
			clusterhash.Delete(ctx, pipe, l.ks, c)
		}
		for s := l.shardCount; s < old; s++ {
			shardstatus.Delete(ctx, pipe, l.ks, s)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			return fmt.Errorf("launcher: drop records of clusters and shards no longer planned: %w", err)
		}
	}
	return nil
}

// plannedShardMap is the whole shard map of the plan: every shard's
// cluster, the shard count and the cluster count.
func (l *Launcher) plannedShardMap() shardmap.Map {
	ranges := splitShards(l.shardCount, l.totalClusters)
	m := shardmap.Map{ShardCount: l.shardCount, Clusters: len(ranges), Owners: map[int]int{}}
	for c, shards := range ranges {
		for _, s := range shards {
			m.Owners[s] = c
		}
	}
	return m
}

// checkBudget counts the shards of a (re)start that will IDENTIFY (those
// without a saved session) and refuses when session_start_limit cannot pay
// for them. It returns that count.
func (l *Launcher) checkBudget(ctx context.Context, shards []int) (int, error) {
	states, err := sessions.Load(ctx, l.rdb, l.ks, shards)
	if err != nil {
		return 0, fmt.Errorf("launcher: load sessions: %w", err)
	}
	identifies := len(shards) - len(states) // Load returns only resumable sessions
	if identifies == 0 {
		return 0, nil
	}
	if err := identify.CheckBudget(ctx, l.rdb, l.ks, identifies, l.cfg.IdentifyReserve); err != nil {
		return identifies, fmt.Errorf("launcher: %d shards must identify: %w", identifies, err)
	}
	return identifies, nil
}

func allShards(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// settlePlan writes the bot's plan (the shard map). With several launchers
// (TotalClusters) it checks it against the running bot's first; a single
// launcher refuses to start beside cooperating ones, and clears the
// session fences they left, which its unfenced writes would trip over.
func (l *Launcher) settlePlan(ctx context.Context) error {
	if l.cfg.TotalClusters > 0 {
		l.coop = newCoop(l)
		return l.coop.settlePlan(ctx)
	}
	// One launcher runs the bot.
	others, err := leases.Launchers(ctx, l.rdb, l.ks)
	if err != nil {
		return fmt.Errorf("launcher: %w", err)
	}
	if len(others) > 0 {
		return fmt.Errorf("%w: launchers %s run this bot together (%s); start this one with %s too",
			ErrPlanConflict, launcherNames(others), envTotalClusters, envTotalClusters)
	}
	if err := l.saveGateway(ctx); err != nil {
		return err
	}
	if err := l.writeShardMap(ctx); err != nil {
		return err
	}
	if err := sessions.ClearFences(ctx, l.rdb, l.ks, allShards(l.shardCount)); err != nil {
		return fmt.Errorf("launcher: %w", err)
	}
	return nil
}
