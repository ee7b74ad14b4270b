package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync/atomic"

	"github.com/disgoorg/disgo/bot"
	"github.com/disgoorg/disgo/rest"
	"github.com/disgoorg/snowflake/v2"

	"github.com/megane-go/megane/cache"
)

// clientSource answers owner lookups (cache.OwnerSource) from a disgo
// client: its in-process cache when that holds the entity (off unless
// BotOptions turned it on), else what REST returned for the same entity
// less than a TTL ago (restCache), else REST. Members, roles and users
// looked up in a guild need that guild; a user without one is fetched by
// id.
type clientSource struct {
	client *bot.Client
	cache  *restCache // nil: every miss of disgo's cache is a REST call
	// rest counts REST calls made; cached counts lookups restCache answered.
	rest, cached *atomic.Int64
}

var _ cache.SourcedOwnerSource = clientSource{}

// Lookup implements cache.OwnerSource.
func (s clientSource) Lookup(ctx context.Context, kind cache.Entity, guild, id uint64) ([]byte, error) {
	b, _, err := s.LookupSource(ctx, kind, guild, id)
	return b, err
}

// LookupSource implements cache.SourcedOwnerSource.
func (s clientSource) LookupSource(ctx context.Context, kind cache.Entity, guild, id uint64) ([]byte, cache.Source, error) {
	if b, ok, err := s.fromDisgo(kind, guild, id); ok || err != nil {
		return b, cache.SourceOwnerCache, err
	}
	if kind == cache.EntityUser {
		guild = 0 // REST finds a user by id alone: one entry per user
	}
	key := restKey{kind: kind, guild: guild, id: id}
	if s.cache == nil {
		b, err := s.fromREST(ctx, key)
		return b, cache.SourceOwnerREST, err
	}
	b, fresh, err := s.cache.get(ctx, key, func(ctx context.Context) (map[restKey][]byte, error) {
		return s.fetchREST(ctx, key)
	})
	if err != nil {
		return nil, "", err
	}
	if !fresh {
		if s.cached != nil {
			s.cached.Add(1)
		}
		return b, cache.SourceOwnerCache, nil
	}
	return b, cache.SourceOwnerREST, nil
}

// fromDisgo answers from disgo's in-process cache; ok is false on a miss.
func (s clientSource) fromDisgo(kind cache.Entity, guild, id uint64) (b []byte, ok bool, err error) {
	c := s.client
	gid, sid := snowflake.ID(guild), snowflake.ID(id)
	var v any
	switch kind {
	case cache.EntityGuild:
		if g, found := c.Caches.Guild(sid); found {
			v = g
		}
	case cache.EntityChannel:
		if ch, found := c.Caches.Channel(sid); found {
			v = ch
		}
	case cache.EntityRole:
		if guild == 0 {
			return nil, false, fmt.Errorf("cluster: role %d without its guild: %w", id, cache.ErrNotFound)
		}
		if r, found := c.Caches.Role(gid, sid); found {
			v = r
		}
	case cache.EntityMember:
		if guild == 0 {
			return nil, false, fmt.Errorf("cluster: member %d without its guild: %w", id, cache.ErrNotFound)
		}
		if m, found := c.Caches.Member(gid, sid); found {
			v = m
		}
	case cache.EntityUser:
		if guild != 0 {
			if m, found := c.Caches.Member(gid, sid); found {
				v = m.User
			}
		}
	default:
		return nil, false, fmt.Errorf("cluster: no lookup for kind %q: %w", kind, cache.ErrNotFound)
	}
	if v == nil {
		return nil, false, nil
	}
	b, err = json.Marshal(v)
	return b, true, err
}

// fromREST looks key up over REST.
func (s clientSource) fromREST(ctx context.Context, key restKey) ([]byte, error) {
	got, err := s.fetchREST(ctx, key)
	if err != nil {
		return nil, err
	}
	if b, ok := got[key]; ok {
		return b, nil
	}
	return nil, fmt.Errorf("cluster: %s %d of guild %d: %w", key.kind, key.id, key.guild, cache.ErrNotFound)
}

// fetchREST makes the one REST call that answers key. It returns what the
// call returned, keyed: a role lookup lists every role of the guild, and
// all of them are worth keeping.
func (s clientSource) fetchREST(ctx context.Context, key restKey) (map[restKey][]byte, error) {
	c := s.client
	gid, sid := snowflake.ID(key.guild), snowflake.ID(key.id)
	opt := rest.WithCtx(ctx)
	if s.rest != nil {
		s.rest.Add(1)
	}
	var (
		v   any
		err error
	)
	switch key.kind {
	case cache.EntityGuild:
		v, err = c.Rest.GetGuild(sid, false, opt)
	case cache.EntityChannel:
		v, err = c.Rest.GetChannel(sid, opt)
	case cache.EntityRole:
		// The list route, which every Discord API version has.
		roles, rerr := c.Rest.GetRoles(gid, opt)
		if rerr != nil {
			err = rerr
			break
		}
		out := make(map[restKey][]byte, len(roles))
		for _, r := range roles {
			b, err := json.Marshal(r)
			if err != nil {
				return nil, err
			}
			out[restKey{kind: cache.EntityRole, guild: key.guild, id: uint64(r.ID)}] = b
		}
		if _, ok := out[key]; !ok {
			return nil, fmt.Errorf("cluster: role %d of guild %d: %w", key.id, key.guild, cache.ErrNotFound)
		}
		return out, nil
	case cache.EntityMember:
		v, err = c.Rest.GetMember(gid, sid, opt)
	case cache.EntityUser:
		v, err = c.Rest.GetUser(sid, opt)
	default:
		return nil, fmt.Errorf("cluster: no lookup for kind %q: %w", key.kind, cache.ErrNotFound)
	}
	if err != nil {
		var re *rest.Error
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode == http.StatusNotFound {
			return nil, fmt.Errorf("cluster: %s %d: %w", key.kind, key.id, cache.ErrNotFound)
		}
		return nil, fmt.Errorf("cluster: look up %s %d: %w", key.kind, key.id, err)
	}
	b, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	return map[restKey][]byte{key: b}, nil
}
