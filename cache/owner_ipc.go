package cache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"

	"github.com/megane-go/megane/shardmap"
)

// FetchOp is the IPC operation a cluster answers with OwnerHandler.
const FetchOp = "cache.fetch"

// Requester sends one IPC request to the node at address to and returns its
// reply. redisipc's Node satisfies it.
type Requester interface {
	Call(ctx context.Context, to, op string, payload []byte) ([]byte, error)
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
