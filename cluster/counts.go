package cluster

import (
	"context"
	"log/slog"
	"time"

	"github.com/megane-go/megane/cache"
)

// countsTTL is how long the eval environment reuses the cluster's
// projection counts. Every eval computes every provided value, so without
// it one expression would read the counts once per count it could mention;
// it is short enough that an eval never sees counts older than the eval
// before it.
const countsTTL = 100 * time.Millisecond

// guildCounts returns the guild count of each of the cluster's shards: the
// one source of that number for every view (eval's shard_statuses and
// guilds, the statistics, the shard status hashes). With the projection it
// is the size of the shard's guild set in Redis, which outlives the
// process, so a shard that RESUMEd (and got no READY) counts right at once;
// without it, the tracker's count, which a resumed shard takes from its
// saved session. -1 marks a count that is unknown.
func (r *runner) guildCounts(ctx context.Context) (map[int]int64, error) {
	if r.sh.proj == nil {
		return r.track.guildCounts(), nil
	}
	n, err := r.sh.reader.ShardGuildCounts(ctx, r.ids)
	if err != nil {
		return nil, err
	}
	return n, nil
}

// shardCounts is a snapshot of the cluster's counts, by shard.
type shardCounts struct {
	guilds  map[int]int64        // guildCounts; nil when unreadable
	byShard map[int]cache.Counts // the projection's counts; nil without one
}

// sumGuilds returns the sum of the guild counts of ids, or -1 when one
// of them is unknown.
func sumGuilds(guilds map[int]int64, ids []int) int64 {
	var sum int64
	for _, id := range ids {
		n, ok := guilds[id]
		if !ok || n < 0 {
			return -1
		}
		sum += n
	}
	return sum
}

// readCounts reads a shardCounts: with the projection, in one pipeline, so
// that the guilds and the other counts of one eval are of one moment.
func (r *runner) readCounts(ctx context.Context) shardCounts {
	if r.sh.proj == nil {
		return shardCounts{guilds: r.track.guildCounts()}
	}
	by, err := r.sh.reader.CountsByShard(ctx, r.ids)
	if err != nil {
		r.log.Debug("cluster: reading projection counts", slog.Any("error", err))
		return shardCounts{}
	}
	guilds := make(map[int]int64, len(by))
	for id, c := range by {
		guilds[id] = c.Guilds
	}
	return shardCounts{guilds: guilds, byShard: by}
}

// evalCounts is readCounts for the eval environment, reusing a result
// younger than countsTTL.
func (r *runner) evalCounts(ctx context.Context) shardCounts {
	sh := r.sh
	sh.countsMu.Lock()
	defer sh.countsMu.Unlock()
	if !sh.countsAt.IsZero() && time.Since(sh.countsAt) < countsTTL {
		return sh.counts
	}
	sh.counts = r.readCounts(ctx)
	sh.countsAt = time.Now()
	return sh.counts
}

// clusterGuilds is the number of guilds of the cluster's shards (see
// guildCounts); -1 when unknown.
func (r *runner) clusterGuilds(ctx context.Context) int64 {
	n, err := r.guildCounts(ctx)
	if err != nil {
		r.log.Debug("cluster: reading guild counts", slog.Any("error", err))
		return -1
	}
	return sumGuilds(n, r.ids)
}
