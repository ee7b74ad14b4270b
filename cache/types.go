package cache

import (
	"strconv"
	"strings"
	"time"
)

// The typed views below decode the fields the default configuration keeps;
// Fields holds every stored field as it is in Redis, for the ones configured
// beyond the defaults. A field that is not stored decodes as the zero value.

// Guild is a projected guild.
type Guild struct {
	ID uint64
	// Shard is the shard that owns the guild in the projection.
	Shard int
	// Unavailable is true during an outage, and after the shard's READY
	// until the guild's GUILD_CREATE; the other fields are then the last
	// known ones (or empty).
	Unavailable     bool
	Name            string
	Icon            string
	OwnerID         uint64
	MemberCount     int
	Large           bool
	Features        []string
	PreferredLocale string
	PremiumTier     int
	JoinedAt        time.Time
	Fields          map[string]string
}

// Channel is a projected guild channel or thread.
type Channel struct {
	ID       uint64
	GuildID  uint64
	Type     int
	Name     string
	Position int
	ParentID uint64
	NSFW     bool
	// OwnerID is a thread's creator.
	OwnerID uint64
	// Archived is a thread's thread_metadata.archived.
	Archived bool
	Fields   map[string]string
}

// Role is a projected role.
type Role struct {
	ID          uint64
	GuildID     uint64
	Name        string
	Color       int
	Position    int
	Permissions uint64
	Hoist       bool
	Managed     bool
	Mentionable bool
	Fields      map[string]string
}

// User is a projected user.
type User struct {
	ID            uint64
	Username      string
	GlobalName    string
	Discriminator string
	Avatar        string
	Bot           bool
	Fields        map[string]string
}

// Member is a projected guild membership.
type Member struct {
	GuildID  uint64
	UserID   uint64
	Nick     string
	Roles    []uint64
	JoinedAt time.Time
	Avatar   string
	Pending  bool
	Fields   map[string]string
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
