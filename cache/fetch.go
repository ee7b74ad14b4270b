package cache

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
)

// FetcherConfig configures a Fetcher.
type FetcherConfig struct {
	// Redis is the client of the projection. Required.
	Redis redis.UniversalClient
	// Keys is the keyspace of the bot. Required.
	Keys keyspace.Keyspace
	// Requester asks owning clusters. Nil: the projection is the only source.
	Requester Requester
	// Fallback answers for entities whose guild, hence owner, is unknown
	// (a channel or user not in the projection), typically a REST client.
	// Nil: those are ErrNotFound.
	Fallback OwnerSource
	// SchemaTTL is how long the recorded projection schema and shard count
	// are reused before being read again. Default 30s.
	SchemaTTL time.Duration
	// Logger receives owner failures in batch fetches. Default: discard.
	Logger *slog.Logger
}

// Fetcher gets entities that may live on other clusters: from the
// projection when it can answer, else from the cluster owning the guild
// (one request per owner, never a broadcast), else from the Fallback.
// It is safe for concurrent use.
type Fetcher struct {
	cfg FetcherConfig
	r   *Reader

	mu         sync.Mutex
	schema     map[Entity][]string
	shardCount int
	readAt     time.Time
	now        func() time.Time
}

// NewFetcher returns a Fetcher.
func NewFetcher(cfg FetcherConfig) (*Fetcher, error) {
	if cfg.Redis == nil || cfg.Keys.Namespace() == "" {
		return nil, fmt.Errorf("%w: Fetcher needs Redis and Keys", ErrInvalidConfig)
	}
	if cfg.SchemaTTL <= 0 {
		cfg.SchemaTTL = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return &Fetcher{cfg: cfg, r: NewReader(cfg.Redis, cfg.Keys), now: time.Now}, nil
}

// Reader returns the Fetcher's projection reader.
func (f *Fetcher) Reader() *Reader { return f.r }

// FetchOption tunes one fetch.
type FetchOption func(*fetchOpts)

type fetchOpts struct {
	fields  []string
	sources map[uint64]Source
}

// WithFields names fields the caller needs. When the projection does not
// keep one of them, the owner is asked instead.
func WithFields(fields ...string) FetchOption {
	return func(o *fetchOpts) { o.fields = append(o.fields, fields...) }
}

// WithSources makes the fetch record in dst where each entity it returns
// came from (SourceProjection, SourceOwnerCache, SourceOwnerREST,
// SourceOwner or SourceFallback), keyed by id: a way to see which fetches
// cost a Discord REST call. dst must not be nil; the fetch only adds to it.
func WithSources(dst map[uint64]Source) FetchOption {
	return func(o *fetchOpts) { o.sources = dst }
}

func (f *Fetcher) meta(ctx context.Context) (map[Entity][]string, int, error) {
	f.mu.Lock()
	if f.schema != nil && f.now().Sub(f.readAt) < f.cfg.SchemaTTL {
		s, n := f.schema, f.shardCount
		f.mu.Unlock()
		return s, n, nil
	}
	f.mu.Unlock()
	s, err := f.r.Schema(ctx)
	if err != nil {
		return nil, 0, err
	}
	n, err := f.r.shardCount(ctx)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, 0, err
	}
	f.mu.Lock()
	f.schema, f.shardCount, f.readAt = s, n, f.now()
	f.mu.Unlock()
	return s, n, nil
}

func (f *Fetcher) key(kind Entity, guild, id uint64) string {
	k := f.cfg.Keys
	switch kind {
	case EntityGuild:
		return k.Guild(id)
	case EntityChannel:
		return k.Channel(id)
	case EntityRole:
		return k.Role(id)
	case EntityUser:
		return k.User(id)
	case EntityMember:
		return k.Member(guild, id)
	}
	return ""
}

// Fetch returns the fields of the entities of kind with ids (in guild, when
// the kind lives in one; 0 when unknown), keyed by id; ids found nowhere are
// absent. A kind the projection does not hold (one served by an OwnerMux
// handler) always goes to the owner, so guild must then be given. When some
// owners fail, Fetch returns what it got and the joined errors.
func (f *Fetcher) Fetch(ctx context.Context, kind Entity, guild uint64, ids []uint64, opts ...FetchOption) (map[uint64]map[string]string, error) {
	var o fetchOpts
	for _, fn := range opts {
		fn(&o)
	}
	schema, shardCount, err := f.meta(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[uint64]map[string]string, len(ids))
	kept, projected := schema[kind]
	answerable := projected && f.key(kind, guild, 0) != ""
	for _, fl := range o.fields {
		if !slices.Contains(kept, fl) {
			answerable = false
		}
	}
	if kind == EntityMember && guild == 0 {
		return nil, fmt.Errorf("cache: fetch member needs its guild: %w", ErrNotFound)
	}

	// 1. The projection.
	var rest []uint64
	ownerGuild := map[uint64]uint64{} // id -> guild whose owner can answer
	if f.key(kind, guild, 0) != "" {
		keys := make([]string, len(ids))
		for i, id := range ids {
			keys[i] = f.key(kind, guild, id)
		}
		ms, err := f.r.hashes(ctx, keys)
		if err != nil {
			return nil, err
		}
		for i, m := range ms {
			if m != nil && answerable {
				out[ids[i]] = m
				o.note(ids[i], SourceProjection)
				continue
			}
			rest = append(rest, ids[i])
			if m != nil && kind == EntityChannel {
				ownerGuild[ids[i]] = fU64(m, "guild_id")
			}
		}
	} else {
		rest = ids
	}
	if len(rest) == 0 {
		return out, nil
	}

	// 2. Which guild, hence which owner, can answer for the rest.
	var userGuilds map[uint64]*redis.StringCmd
	if kind == EntityUser {
		pipe := f.cfg.Redis.Pipeline()
		userGuilds = map[uint64]*redis.StringCmd{}
		for _, id := range rest {
			userGuilds[id] = pipe.SRandMember(ctx, f.cfg.Keys.UserGuilds(id))
		}
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return out, fmt.Errorf("cache: user guilds: %w", err)
		}
	}
	byGuild := map[uint64][]uint64{}
	var orphans []uint64
	for _, id := range rest {
		g := guild
		switch kind {
		case EntityGuild:
			g = id
		case EntityChannel:
			if og := ownerGuild[id]; og != 0 {
				g = og
			}
		case EntityUser:
			g, _ = strconv.ParseUint(userGuilds[id].Val(), 10, 64)
		}
		if g == 0 {
			orphans = append(orphans, id)
		} else {
			byGuild[g] = append(byGuild[g], id)
		}
	}
	var errs []error
	if len(byGuild) > 0 && f.cfg.Requester != nil {
		gs := make([]uint64, 0, len(byGuild))
		for g := range byGuild {
			gs = append(gs, g)
		}
		owners, err := f.owners(ctx, shardCount, gs)
		if err != nil {
			return out, err
		}
		// One request per owner. Guilds, channels and users are found by id
		// alone; members and user kinds are looked up in their guild, which
		// then travels with the request (one per owner and guild).
		type target struct {
			addr  string
			guild uint64
		}
		perGuild := kind != EntityGuild && kind != EntityChannel && kind != EntityUser
		batches := map[target][]uint64{}
		var order []target
		for _, g := range gs {
			addr := owners[g]
			if addr == "" {
				orphans = append(orphans, byGuild[g]...)
				continue
			}
			tg := target{addr: addr}
			if perGuild {
				tg.guild = g
			}
			if _, ok := batches[tg]; !ok {
				order = append(order, tg)
			}
			batches[tg] = append(batches[tg], byGuild[g]...)
		}
		for _, tg := range order {
			got, from, err := f.ask(ctx, tg.addr, kind, tg.guild, batches[tg])
			if err != nil {
				f.cfg.Logger.Warn("cache: owner fetch failed", slog.String("owner", tg.addr),
					slog.String("kind", string(kind)), slog.Any("error", err))
				errs = append(errs, err)
				continue
			}
			for id, m := range got {
				out[id] = m
				o.note(id, from[id])
			}
		}
	} else {
		for _, ids := range byGuild {
			orphans = append(orphans, ids...)
		}
	}

	// 3. The fallback, for what no owner can answer.
	if f.cfg.Fallback != nil {
		var h hashWrite
		for _, id := range orphans {
			if _, ok := out[id]; ok {
				continue
			}
			raw, err := f.cfg.Fallback.Lookup(ctx, kind, guild, id)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				errs = append(errs, err)
				continue
			}
			h.reset()
			if err := project(kind, raw, allFields, &h); err != nil {
				errs = append(errs, err)
				continue
			}
			m := h.fields()
			if g := snowflake(member(raw, "guild_id")); g != 0 {
				m["guild_id"] = strconv.FormatUint(g, 10)
			}
			out[id] = m
			o.note(id, SourceFallback)
		}
	}
	return out, errors.Join(errs...)
}
