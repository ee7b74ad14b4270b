package cache

import (
	"context"
	"encoding/json"
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
	"github.com/megane-go/megane/shardmap"
)

// FetchOp is the IPC operation a cluster answers with OwnerHandler.
const FetchOp = "cache.fetch"

// Requester sends one IPC request to the node at address to and returns its
// reply. redisipc's Node satisfies it.
type Requester interface {
	Call(ctx context.Context, to, op string, payload []byte) ([]byte, error)
}

// OwnerSource looks up what the projection cannot answer, in the process
// that owns the guild (typically through disgo's in-memory cache, else its
// REST client). It returns the entity as Discord's JSON object, as the REST
// API sends it or as json.Marshal writes a disgo value, and an error wrapping
// ErrNotFound when there is no such entity. kind is an Entity or a kind the
// user registered on an OwnerMux; guild is 0 when unknown.
type OwnerSource interface {
	Lookup(ctx context.Context, kind Entity, guild, id uint64) ([]byte, error)
}

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

// OwnerSourceFunc adapts a function to OwnerSource.
type OwnerSourceFunc func(ctx context.Context, kind Entity, guild, id uint64) ([]byte, error)

// Lookup calls f.
func (f OwnerSourceFunc) Lookup(ctx context.Context, kind Entity, guild, id uint64) ([]byte, error) {
	return f(ctx, kind, guild, id)
}

// OwnerMux routes lookups by kind, so user code can serve kinds of its own
// ("ban", "voice_state", ...) next to the built-in ones.
type OwnerMux struct {
	mu       sync.RWMutex
	kinds    map[Entity]OwnerSource
	fallback OwnerSource
}

var _ SourcedOwnerSource = (*OwnerMux)(nil)

// NewOwnerMux returns a mux that sends kinds without a handler to fallback
// (nil: ErrNotFound).
func NewOwnerMux(fallback OwnerSource) *OwnerMux {
	return &OwnerMux{kinds: map[Entity]OwnerSource{}, fallback: fallback}
}

// Handle registers src for kind, replacing an earlier one.
func (m *OwnerMux) Handle(kind Entity, src OwnerSource) {
	m.mu.Lock()
	m.kinds[kind] = src
	m.mu.Unlock()
}

// Lookup calls the source registered for kind.
func (m *OwnerMux) Lookup(ctx context.Context, kind Entity, guild, id uint64) ([]byte, error) {
	b, _, err := m.LookupSource(ctx, kind, guild, id)
	return b, err
}

// LookupSource calls the source registered for kind, and reports where its
// answer came from (SourceOwner when that source does not tell).
func (m *OwnerMux) LookupSource(ctx context.Context, kind Entity, guild, id uint64) ([]byte, Source, error) {
	m.mu.RLock()
	src := m.kinds[kind]
	m.mu.RUnlock()
	if src == nil {
		src = m.fallback
	}
	if src == nil {
		return nil, "", fmt.Errorf("cache: no lookup for kind %q: %w", kind, ErrNotFound)
	}
	return lookupSource(ctx, src, kind, guild, id)
}

// fetchRequest is the FetchOp payload. Ids are strings, as snowflakes are
// everywhere else on the wire.
type fetchRequest struct {
	Kind  Entity   `json:"kind"`
	Guild string   `json:"guild_id,omitempty"`
	IDs   []string `json:"ids"`
}

// fetchReply is the FetchOp reply: the fields of each entity found, in the
// layout of the projection's hashes (untruncated, every scalar field), and
// where each came from (absent from an owner that predates it: SourceOwner).
type fetchReply struct {
	Items   map[string]map[string]string `json:"items"`
	Sources map[string]Source            `json:"sources,omitempty"`
}

// OwnerHandler returns the IPC handler a cluster registers for FetchOp. It
// answers from src and converts each object to the projection's field
// layout, with every scalar field and nothing truncated.
func OwnerHandler(src OwnerSource) func(ctx context.Context, payload []byte) ([]byte, error) {
	return func(ctx context.Context, payload []byte) ([]byte, error) {
		var req fetchRequest
		if err := json.Unmarshal(payload, &req); err != nil {
			return nil, fmt.Errorf("cache: bad %s request: %w", FetchOp, err)
		}
		if len(req.IDs) > 1000 {
			return nil, fmt.Errorf("cache: %s request for %d ids (max 1000)", FetchOp, len(req.IDs))
		}
		guild, _ := strconv.ParseUint(req.Guild, 10, 64)
		rep := fetchReply{Items: map[string]map[string]string{}, Sources: map[string]Source{}}
		var h hashWrite
		for _, s := range req.IDs {
			id, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				continue
			}
			raw, from, err := lookupSource(ctx, src, req.Kind, guild, id)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return nil, err
			}
			h.reset()
			if err := project(req.Kind, raw, allFields, &h); err != nil {
				return nil, fmt.Errorf("cache: %s %d from owner: %w", req.Kind, id, err)
			}
			f := h.fields()
			if req.Kind == EntityChannel || req.Kind == EntityRole {
				if g := snowflake(member(raw, "guild_id")); g != 0 {
					f["guild_id"] = strconv.FormatUint(g, 10)
				} else if guild != 0 {
					f["guild_id"] = req.Guild
				}
			}
			rep.Items[s] = f
			rep.Sources[s] = from
		}
		return json.Marshal(rep)
	}
}

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
		return nil, fmt.Errorf("%w: Fetcher needs Redis and Keys", ErrConfig)
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

// Owner returns the IPC address ("cluster:<id>") of the cluster that owns
// guild, from the shard map.
func (f *Fetcher) Owner(ctx context.Context, guild uint64) (string, error) {
	_, n, err := f.meta(ctx)
	if err != nil {
		return "", err
	}
	owners, err := f.owners(ctx, n, []uint64{guild})
	if err != nil {
		return "", err
	}
	if o := owners[guild]; o != "" {
		return o, nil
	}
	return "", fmt.Errorf("cache: no cluster owns guild %d: %w", guild, ErrNotFound)
}

// ShardOf returns the shard of guild among shardCount shards.
func ShardOf(guild uint64, shardCount int) int {
	if shardCount <= 0 {
		return 0
	}
	return int((guild >> 22) % uint64(shardCount))
}

func (f *Fetcher) owners(ctx context.Context, shardCount int, guilds []uint64) (map[uint64]string, error) {
	out := map[uint64]string{}
	if shardCount <= 0 || len(guilds) == 0 {
		return out, nil
	}
	shards := make([]int, len(guilds))
	for i, g := range guilds {
		shards[i] = ShardOf(g, shardCount)
	}
	clusters, err := shardmap.Owners(ctx, f.cfg.Redis, f.cfg.Keys, shards)
	if err != nil {
		return nil, fmt.Errorf("cache: shard map: %w", err)
	}
	for i, g := range guilds {
		if c, ok := clusters[shards[i]]; ok {
			out[g] = "cluster:" + strconv.Itoa(c)
		}
	}
	return out, nil
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

func (o *fetchOpts) note(id uint64, s Source) {
	if o.sources != nil {
		if s == "" {
			s = SourceOwner
		}
		o.sources[id] = s
	}
}

func (f *Fetcher) ask(ctx context.Context, addr string, kind Entity, guild uint64, ids []uint64) (map[uint64]map[string]string, map[uint64]Source, error) {
	out := map[uint64]map[string]string{}
	from := map[uint64]Source{}
	for len(ids) > 0 {
		n := min(len(ids), 1000)
		req := fetchRequest{Kind: kind}
		if guild != 0 {
			req.Guild = strconv.FormatUint(guild, 10)
		}
		for _, id := range ids[:n] {
			req.IDs = append(req.IDs, strconv.FormatUint(id, 10))
		}
		ids = ids[n:]
		payload, _ := json.Marshal(req)
		b, err := f.cfg.Requester.Call(ctx, addr, FetchOp, payload)
		if err != nil {
			return out, from, fmt.Errorf("cache: fetch %s from %s: %w", kind, addr, err)
		}
		var rep fetchReply
		if err := json.Unmarshal(b, &rep); err != nil {
			return out, from, fmt.Errorf("cache: fetch %s from %s: bad reply: %w", kind, addr, err)
		}
		for s, m := range rep.Items {
			if id, err := strconv.ParseUint(s, 10, 64); err == nil {
				out[id] = m
				from[id] = rep.Sources[s]
			}
		}
	}
	return out, from, nil
}

func (f *Fetcher) one(ctx context.Context, kind Entity, guild, id uint64, opts []FetchOption) (map[string]string, error) {
	got, err := f.Fetch(ctx, kind, guild, []uint64{id}, opts...)
	if m := got[id]; m != nil {
		return m, nil
	}
	if err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("cache: fetch %s %d: %w", kind, id, ErrNotFound)
}

// FetchGuild returns guild id.
func (f *Fetcher) FetchGuild(ctx context.Context, id uint64, opts ...FetchOption) (Guild, error) {
	m, err := f.one(ctx, EntityGuild, 0, id, opts)
	if err != nil {
		return Guild{}, err
	}
	return guildFrom(id, m), nil
}

// FetchChannel returns channel id.
func (f *Fetcher) FetchChannel(ctx context.Context, id uint64, opts ...FetchOption) (Channel, error) {
	m, err := f.one(ctx, EntityChannel, 0, id, opts)
	if err != nil {
		return Channel{}, err
	}
	return channelFrom(id, m), nil
}

// FetchUser returns user id.
func (f *Fetcher) FetchUser(ctx context.Context, id uint64, opts ...FetchOption) (User, error) {
	m, err := f.one(ctx, EntityUser, 0, id, opts)
	if err != nil {
		return User{}, err
	}
	return userFrom(id, m), nil
}

// FetchMember returns user's membership of guild.
func (f *Fetcher) FetchMember(ctx context.Context, guild, user uint64, opts ...FetchOption) (Member, error) {
	m, err := f.one(ctx, EntityMember, guild, user, opts)
	if err != nil {
		return Member{}, err
	}
	return memberFrom(guild, user, m), nil
}

// FetchGuilds returns the guilds of ids that exist, keyed by id. On owner
// failures it returns what it got and the joined errors.
func (f *Fetcher) FetchGuilds(ctx context.Context, ids []uint64, opts ...FetchOption) (map[uint64]Guild, error) {
	got, err := f.Fetch(ctx, EntityGuild, 0, ids, opts...)
	out := make(map[uint64]Guild, len(got))
	for id, m := range got {
		out[id] = guildFrom(id, m)
	}
	return out, err
}

// FetchChannels returns the channels of ids that exist, keyed by id.
func (f *Fetcher) FetchChannels(ctx context.Context, ids []uint64, opts ...FetchOption) (map[uint64]Channel, error) {
	got, err := f.Fetch(ctx, EntityChannel, 0, ids, opts...)
	out := make(map[uint64]Channel, len(got))
	for id, m := range got {
		out[id] = channelFrom(id, m)
	}
	return out, err
}

// FetchUsers returns the users of ids that exist, keyed by id.
func (f *Fetcher) FetchUsers(ctx context.Context, ids []uint64, opts ...FetchOption) (map[uint64]User, error) {
	got, err := f.Fetch(ctx, EntityUser, 0, ids, opts...)
	out := make(map[uint64]User, len(got))
	for id, m := range got {
		out[id] = userFrom(id, m)
	}
	return out, err
}
