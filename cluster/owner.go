package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"

	"github.com/disgoorg/disgo/bot"
	"github.com/disgoorg/disgo/rest"
	"github.com/disgoorg/snowflake/v2"

	"github.com/megane-go/megane/cache"
)

// clientSource answers owner lookups (cache.OwnerSource) from a disgo
// client: its in-process cache when that holds the entity (off unless
// BotOptions turned it on), else REST. Members, roles and users looked up
// in a guild need that guild; a user without one is fetched by id.
type clientSource struct {
	client *bot.Client
}

var _ cache.OwnerSource = clientSource{}

// Lookup implements cache.OwnerSource.
func (s clientSource) Lookup(ctx context.Context, kind cache.Entity, guild, id uint64) ([]byte, error) {
	c := s.client
	gid, sid := snowflake.ID(guild), snowflake.ID(id)
	opt := rest.WithCtx(ctx)
	var (
		v   any
		err error
	)
	switch kind {
	case cache.EntityGuild:
		if g, ok := c.Caches.Guild(sid); ok {
			return json.Marshal(g)
		}
		v, err = c.Rest.GetGuild(sid, false, opt)
	case cache.EntityChannel:
		if ch, ok := c.Caches.Channel(sid); ok {
			return json.Marshal(ch)
		}
		v, err = c.Rest.GetChannel(sid, opt)
	case cache.EntityRole:
		if guild == 0 {
			return nil, fmt.Errorf("cluster: role %d without its guild: %w", id, cache.ErrNotFound)
		}
		if r, ok := c.Caches.Role(gid, sid); ok {
			return json.Marshal(r)
		}
		// The list route, which every Discord API version has.
		roles, rerr := c.Rest.GetRoles(gid, opt)
		if rerr != nil {
			err = rerr
			break
		}
		for _, r := range roles {
			if r.ID == sid {
				return json.Marshal(r)
			}
		}
		return nil, fmt.Errorf("cluster: role %d of guild %d: %w", id, guild, cache.ErrNotFound)
	case cache.EntityMember:
		if guild == 0 {
			return nil, fmt.Errorf("cluster: member %d without its guild: %w", id, cache.ErrNotFound)
		}
		if m, ok := c.Caches.Member(gid, sid); ok {
			return json.Marshal(m)
		}
		v, err = c.Rest.GetMember(gid, sid, opt)
	case cache.EntityUser:
		if guild != 0 {
			if m, ok := c.Caches.Member(gid, sid); ok {
				return json.Marshal(m.User)
			}
		}
		v, err = c.Rest.GetUser(sid, opt)
	default:
		return nil, fmt.Errorf("cluster: no lookup for kind %q: %w", kind, cache.ErrNotFound)
	}
	if err != nil {
		var re *rest.Error
		if errors.As(err, &re) && re.Response != nil && re.Response.StatusCode == http.StatusNotFound {
			return nil, fmt.Errorf("cluster: %s %d: %w", kind, id, cache.ErrNotFound)
		}
		return nil, fmt.Errorf("cluster: look up %s %d: %w", kind, id, err)
	}
	return json.Marshal(v)
}
