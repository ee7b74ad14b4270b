package cache

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"
)

// The typed views below decode the fields the default configuration keeps;
// Fields holds every stored field as it is in Redis, for the ones configured
// beyond the defaults. A field that is not stored decodes as the zero value.

// Guild is a projected guild.
type Guild struct {
	ID uint64 `json:"id,string"`
	// Shard is the shard that owns the guild in the projection.
	Shard int `json:"shard"`
	// Unavailable is true during an outage, and after the shard's READY
	// until the guild's GUILD_CREATE; the other fields are then the last
	// known ones (or empty).
	Unavailable     bool              `json:"unavailable,omitempty"`
	Name            string            `json:"name"`
	Icon            string            `json:"icon,omitempty"`
	OwnerID         uint64            `json:"owner_id,string"`
	MemberCount     int               `json:"member_count"`
	Large           bool              `json:"large"`
	Features        []string          `json:"features"`
	PreferredLocale string            `json:"preferred_locale"`
	PremiumTier     int               `json:"premium_tier"`
	JoinedAt        time.Time         `json:"joined_at"`
	Fields          map[string]string `json:"fields"`
}

// Channel is a projected guild channel or thread.
type Channel struct {
	ID       uint64 `json:"id,string"`
	GuildID  uint64 `json:"guild_id,string"`
	Type     int    `json:"type"`
	Name     string `json:"name"`
	Position int    `json:"position"`
	ParentID uint64 `json:"parent_id,string"`
	NSFW     bool   `json:"nsfw"`
	// OwnerID is a thread's creator.
	OwnerID uint64 `json:"owner_id,string"`
	// Archived is a thread's thread_metadata.archived.
	Archived bool              `json:"archived,omitempty"`
	Fields   map[string]string `json:"fields"`
}

// Role is a projected role.
type Role struct {
	ID          uint64            `json:"id,string"`
	GuildID     uint64            `json:"guild_id,string"`
	Name        string            `json:"name"`
	Color       int               `json:"color"`
	Position    int               `json:"position"`
	Permissions uint64            `json:"permissions,string"`
	Hoist       bool              `json:"hoist"`
	Managed     bool              `json:"managed"`
	Mentionable bool              `json:"mentionable"`
	Fields      map[string]string `json:"fields"`
}

// User is a projected user.
type User struct {
	ID            uint64            `json:"id,string"`
	Username      string            `json:"username"`
	GlobalName    string            `json:"global_name,omitempty"`
	Discriminator string            `json:"discriminator"`
	Avatar        string            `json:"avatar,omitempty"`
	Bot           bool              `json:"bot"`
	Fields        map[string]string `json:"fields"`
}

// Member is a projected guild membership.
type Member struct {
	GuildID  uint64            `json:"guild_id,string"`
	UserID   uint64            `json:"user_id,string"`
	Nick     string            `json:"nick,omitempty"`
	Roles    []uint64          `json:"roles"`
	JoinedAt time.Time         `json:"joined_at"`
	Avatar   string            `json:"avatar,omitempty"`
	Pending  bool              `json:"pending"`
	Fields   map[string]string `json:"fields"`
}

// MarshalJSON writes empty lists and maps as [] and {}, never null, so that
// a guild without features prints the same way whichever path built it.
func (g Guild) MarshalJSON() ([]byte, error) {
	type plain Guild // the same fields and tags, without this method
	p := plain(g)
	p.Features = nonNil(p.Features)
	p.Fields = nonNilMap(p.Fields)
	return json.Marshal(p)
}

// MarshalJSON writes empty lists and maps as [] and {}, never null.
func (m Member) MarshalJSON() ([]byte, error) {
	type plain Member
	p := plain(m)
	p.Roles = nonNil(p.Roles)
	p.Fields = nonNilMap(p.Fields)
	return json.Marshal(p)
}

// MarshalJSON writes an empty Fields as {}, never null.
func (c Channel) MarshalJSON() ([]byte, error) {
	type plain Channel
	p := plain(c)
	p.Fields = nonNilMap(p.Fields)
	return json.Marshal(p)
}

// MarshalJSON writes an empty Fields as {}, never null.
func (r Role) MarshalJSON() ([]byte, error) {
	type plain Role
	p := plain(r)
	p.Fields = nonNilMap(p.Fields)
	return json.Marshal(p)
}

// MarshalJSON writes an empty Fields as {}, never null.
func (u User) MarshalJSON() ([]byte, error) {
	type plain User
	p := plain(u)
	p.Fields = nonNilMap(p.Fields)
	return json.Marshal(p)
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func nonNilMap(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func fU64(m map[string]string, k string) uint64 {
	n, _ := strconv.ParseUint(m[k], 10, 64)
	return n
}

func fInt(m map[string]string, k string) int {
	n, _ := strconv.Atoi(m[k])
	return n
}

func fBool(m map[string]string, k string) bool { return m[k] == "1" || m[k] == "true" }

func fTime(m map[string]string, k string) time.Time {
	t, _ := time.Parse(time.RFC3339Nano, m[k])
	return t
}

func guildFrom(id uint64, m map[string]string) Guild {
	return Guild{
		ID: id, Shard: fInt(m, "shard"), Unavailable: fBool(m, "unavailable"),
		Name: m["name"], Icon: m["icon"], OwnerID: fU64(m, "owner_id"),
		MemberCount: fInt(m, "member_count"), Large: fBool(m, "large"),
		Features: DecodeFeatures(m["features"]), PreferredLocale: m["preferred_locale"],
		PremiumTier: fInt(m, "premium_tier"), JoinedAt: fTime(m, "joined_at"), Fields: m,
	}
}

func channelFrom(id uint64, m map[string]string) Channel {
	return Channel{
		ID: id, GuildID: fU64(m, "guild_id"), Type: fInt(m, "type"), Name: m["name"],
		Position: fInt(m, "position"), ParentID: fU64(m, "parent_id"), NSFW: fBool(m, "nsfw"),
		OwnerID: fU64(m, "owner_id"), Archived: fBool(m, "archived"), Fields: m,
	}
}

func roleFrom(id uint64, m map[string]string) Role {
	return Role{
		ID: id, GuildID: fU64(m, "guild_id"), Name: m["name"], Color: fInt(m, "color"),
		Position: fInt(m, "position"), Permissions: fU64(m, "permissions"),
		Hoist: fBool(m, "hoist"), Managed: fBool(m, "managed"),
		Mentionable: fBool(m, "mentionable"), Fields: m,
	}
}

func userFrom(id uint64, m map[string]string) User {
	return User{
		ID: id, Username: m["username"], GlobalName: m["global_name"],
		Discriminator: m["discriminator"], Avatar: m["avatar"], Bot: fBool(m, "bot"), Fields: m,
	}
}

func memberFrom(g, u uint64, m map[string]string) Member {
	var roles []uint64
	if r := m["roles"]; r != "" {
		for _, s := range strings.Split(r, ",") {
			if n, err := strconv.ParseUint(s, 10, 64); err == nil {
				roles = append(roles, n)
			}
		}
	}
	return Member{
		GuildID: g, UserID: u, Nick: m["nick"], Roles: roles, JoinedAt: fTime(m, "joined_at"),
		Avatar: m["avatar"], Pending: fBool(m, "pending"), Fields: m,
	}
}
