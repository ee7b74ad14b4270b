package launcher

import (
	"context"
	"log/slog"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/clusterhash"
	"github.com/megane-go/megane/identify"
	"github.com/megane-go/megane/launcherhash"
	"github.com/megane-go/megane/shardmap"
)

// probeRedis is the health monitor's write probe: it rewrites the
// launcher's hash (keyspace.Launcher), so the probe is also what brings
// that hash back after a FLUSHDB or a restart without persistence. It
// returns errEmptied when the hash was gone.
func (l *Launcher) probeRedis(ctx context.Context) error {
	pipe := l.rdb.Pipeline()
	had := launcherhash.Exists(ctx, pipe, l.ks)
	launcherhash.Write(ctx, pipe, l.ks, l.launcherRecord(launcherhash.StatusRunning))
	if _, err := pipe.Exec(ctx); err != nil {
		return err
	}
	if had.Val() == 0 {
		return errEmptied
	}
	return nil
}

// ensureRecords rewrites the records the launcher owns that have gone
// missing from Redis: the gateway hash, the shard map and its fields in
// each cluster's hash (the cluster process rewrites its own). It costs one
// pipelined round trip of existence checks when nothing is missing.
func (l *Launcher) ensureRecords(ctx context.Context) {
	pipe := l.rdb.Pipeline()
	gateway := pipe.Exists(ctx, l.ks.Gateway())
	shardMap := shardmap.Fields(ctx, pipe, l.ks)
	storedCount := shardmap.ShardCountField(ctx, pipe, l.ks)
	clusters := make([]*redis.BoolCmd, len(l.clusters))
	for i, p := range l.clusters {
		clusters[i] = clusterhash.HasSupervision(ctx, pipe, l.ks, p.id)
	}
	if _, err := pipe.Exec(ctx); err != nil && err != redis.Nil {
		return // the next probe tells whether Redis fails
	}
	var rewrote []string
	if gateway.Val() == 0 {
		if err := identify.SaveGatewayInfo(ctx, l.rdb, l.ks, l.gateway); err != nil {
			l.log.Warn("could not rewrite the missing gateway hash", slog.Any("error", err))
		} else {
			rewrote = append(rewrote, "gateway")
		}
	}
	// A map of another shard count is a re-shard's (this launcher's
	// clusters are held, or another launcher moved the bot): not a loss.
	l.mu.Lock()
	held := l.held != nil
	l.mu.Unlock()
	otherCount := storedCount.Err() == nil && storedCount.Val() != strconv.Itoa(l.currentShardCount())
	if plan := l.plannedShardMap(); shardMap.Val() != int64(plan.Len()) && !held && !otherCount {
		// Missing or partial (a cluster rewrote its own part first): the
		// launcher knows the whole map. Fields only ever get added, so no
		// reader sees a mix of layouts.
		if err := shardmap.Add(ctx, l.rdb, l.ks, plan).Err(); err != nil {
			l.log.Warn("could not rewrite the shard map", slog.Any("error", err))
		} else {
			rewrote = append(rewrote, "shard map")
		}
	}
	for i, p := range l.clusters {
		if owned, _, _ := p.own.get(); owned && !clusters[i].Val() {
			p.recordState()
			rewrote = append(rewrote, p.name())
		}
	}
	if len(rewrote) > 0 {
		l.log.Warn("Redis had lost records of the bot: rewritten", slog.String("records", strings.Join(rewrote, ", ")))
	}
}
