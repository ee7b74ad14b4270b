package cache

import "context"

// Source tells where a fetched entity came from, which is what it cost.
type Source string

// Sources of a fetched entity (see WithSources).
const (
	// SourceProjection: the Redis projection; no other process was asked.
	SourceProjection Source = "projection"
	// SourceOwnerCache: the owning cluster answered from memory (disgo's
	// cache, or what its REST calls returned less than
	// cluster.Options.OwnerCacheTTL ago); Discord was not called.
	SourceOwnerCache Source = "owner_cache"
	// SourceOwnerREST: the owning cluster called Discord's REST API.
	SourceOwnerREST Source = "owner_rest"
	// SourceOwner: the owning cluster answered from a lookup that does not
	// say how (an OwnerSource that is no SourcedOwnerSource).
	SourceOwner Source = "owner"
	// SourceFallback: FetcherConfig.Fallback answered, in this process,
	// because no owner could (the guild, hence the owner, is unknown). In a
	// cluster that is its own disgo cache or REST; its statistics count the
	// REST calls.
	SourceFallback Source = "fallback"
)

// SourcedOwnerSource is an OwnerSource that also tells where each answer
// came from (SourceOwnerCache, SourceOwnerREST), so that a fetch can report
// it. OwnerMux and the clusters' built-in lookups implement it.
type SourcedOwnerSource interface {
	OwnerSource
	LookupSource(ctx context.Context, kind Entity, guild, id uint64) ([]byte, Source, error)
}

// lookupSource calls src, learning the source when src tells it.
func lookupSource(ctx context.Context, src OwnerSource, kind Entity, guild, id uint64) ([]byte, Source, error) {
	if s, ok := src.(SourcedOwnerSource); ok {
		return s.LookupSource(ctx, kind, guild, id)
	}
	b, err := src.Lookup(ctx, kind, guild, id)
	return b, SourceOwner, err
}

func (o *fetchOpts) note(id uint64, s Source) {
	if o.sources != nil {
		if s == "" {
			s = SourceOwner
		}
		o.sources[id] = s
	}
}
