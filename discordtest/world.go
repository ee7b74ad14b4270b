package discordtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/disgoorg/snowflake/v2"
)

// Channel types the world uses. They are all guild channel types: disgo cannot decode
// unknown types, and a DM type in CHANNEL_CREATE panics it.
const (
	ChannelTypeText     = 0
	ChannelTypeVoice    = 2
	ChannelTypeCategory = 4
)

// everyonePermissions is what Discord gives @everyone in a new guild.
const everyonePermissions = 1071698660929

// worldEpoch is the creation time of the first generated guild. Fixed, so that a seed
// always yields the same ids.
var worldEpoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// World is the set of guilds, channels, roles, members and users the fake serves over
// REST and in GUILD_CREATE. Server.World returns a snapshot: changing it does not
// change the server, and later events do not change it.
type World struct {
	// Guilds in creation order; guild i has a snowflake timestamp of epoch+i ms, so
	// ShardFor spreads them evenly over any shard count.
	Guilds []Guild `json:"guilds"`
	// Users is the pool members are drawn from. The bot user is not in it.
	Users []User `json:"users"`
	// Bot is the bot's own user (id = application id).
	Bot User `json:"bot"`

	guildIdx   map[snowflake.ID]int
	channelIdx map[snowflake.ID][2]int
	userIdx    map[snowflake.ID]int
}

// Guild is one guild of the world.
type Guild struct {
	ID       snowflake.ID `json:"id"`
	Name     string       `json:"name"`
	OwnerID  snowflake.ID `json:"owner_id"`
	JoinedAt time.Time    `json:"joined_at"`
	Channels []Channel    `json:"channels"`
	Roles    []Role       `json:"roles"`
	Members  []Member     `json:"members"`
}

// Channel is a guild channel. Type is one of the guild channel types (0 text,
// 2 voice, 4 category, ...).
type Channel struct {
	ID       snowflake.ID `json:"id"`
	GuildID  snowflake.ID `json:"guild_id"`
	Type     int          `json:"type"`
	Name     string       `json:"name"`
	Position int          `json:"position"`
	// ParentID is the category; zero when the channel has none.
	ParentID snowflake.ID `json:"parent_id,omitempty"`
	Topic    string       `json:"topic,omitempty"`
}

// Role is a guild role. The @everyone role has the guild's id.
type Role struct {
	ID          snowflake.ID `json:"id"`
	Name        string       `json:"name"`
	Permissions uint64       `json:"permissions,string"`
	Position    int          `json:"position"`
	Color       int          `json:"color"`
	Hoist       bool         `json:"hoist"`
	Mentionable bool         `json:"mentionable"`
}

// Member is a user's membership in a guild.
type Member struct {
	UserID   snowflake.ID   `json:"user_id"`
	Nick     string         `json:"nick,omitempty"`
	Roles    []snowflake.ID `json:"roles"`
	JoinedAt time.Time      `json:"joined_at"`
}

// User is a Discord user.
type User struct {
	ID         snowflake.ID `json:"id"`
	Username   string       `json:"username"`
	GlobalName string       `json:"global_name,omitempty"`
	Bot        bool         `json:"bot,omitempty"`
}

// Guild returns the guild with the given id.
func (w *World) Guild(id snowflake.ID) (*Guild, bool) {
	w.index()
	i, ok := w.guildIdx[id]
	if !ok {
		return nil, false
	}
	return &w.Guilds[i], true
}

// Channel returns the channel with the given id, from any guild.
func (w *World) Channel(id snowflake.ID) (*Channel, bool) {
	w.index()
	p, ok := w.channelIdx[id]
	if !ok {
		return nil, false
	}
	return &w.Guilds[p[0]].Channels[p[1]], true
}

// User returns the user with the given id; the bot user included.
func (w *World) User(id snowflake.ID) (*User, bool) {
	if id == w.Bot.ID {
		return &w.Bot, true
	}
	w.index()
	i, ok := w.userIdx[id]
	if !ok {
		return nil, false
	}
	return &w.Users[i], true
}

// Member returns userID's membership of guildID.
func (w *World) Member(guildID, userID snowflake.ID) (*Member, bool) {
	g, ok := w.Guild(guildID)
	if !ok {
		return nil, false
	}
	for i := range g.Members {
		if g.Members[i].UserID == userID {
			return &g.Members[i], true
		}
	}
	return nil, false
}

// GuildsOfShard returns the guilds shard owns when the bot runs shardCount shards.
func (w *World) GuildsOfShard(shard, shardCount int) []*Guild {
	var out []*Guild
	for i := range w.Guilds {
		if ShardFor(w.Guilds[i].ID, shardCount) == shard {
			out = append(out, &w.Guilds[i])
		}
	}
	return out
}

// FirstTextChannel returns the first text channel of guildID, handy for tests that
// need somewhere to post.
func (w *World) FirstTextChannel(guildID snowflake.ID) (*Channel, bool) {
	g, ok := w.Guild(guildID)
	if !ok {
		return nil, false
	}
	for i := range g.Channels {
		if g.Channels[i].Type == ChannelTypeText {
			return &g.Channels[i], true
		}
	}
	return nil, false
}

// index builds the lookup maps lazily; a World built by hand or decoded from JSON
// works too. Mutations inside the server call reindex.
func (w *World) index() {
	if w.guildIdx != nil {
		return
	}
	w.reindex()
}

func (w *World) reindex() {
	w.guildIdx = make(map[snowflake.ID]int, len(w.Guilds))
	w.channelIdx = make(map[snowflake.ID][2]int)
	w.userIdx = make(map[snowflake.ID]int, len(w.Users))
	for gi := range w.Guilds {
		g := &w.Guilds[gi]
		w.guildIdx[g.ID] = gi
		for ci := range g.Channels {
			w.channelIdx[g.Channels[ci].ID] = [2]int{gi, ci}
		}
	}
	for ui := range w.Users {
		w.userIdx[w.Users[ui].ID] = ui
	}
}

// clone deep-copies the world so that callers can read it without locks.
func (w *World) clone() *World {
	c := &World{Bot: w.Bot, Users: slices.Clone(w.Users), Guilds: make([]Guild, len(w.Guilds))}
	for i, g := range w.Guilds {
		g.Channels = slices.Clone(g.Channels)
		g.Roles = slices.Clone(g.Roles)
		g.Members = slices.Clone(g.Members)
		for j := range g.Members {
			g.Members[j].Roles = slices.Clone(g.Members[j].Roles)
		}
		c.Guilds[i] = g
	}
	c.reindex()
	return c
}

var (
	adjectives = []string{"Quiet", "Bright", "Crimson", "Hidden", "Lucky", "Silver", "Wild", "Sleepy", "Cosmic", "Rapid", "Golden", "Frozen"}
	nouns      = []string{"Harbor", "Forest", "Garden", "Tavern", "Summit", "Lagoon", "Archive", "Workshop", "Meadow", "Canyon", "Outpost", "Studio"}
	userWords  = []string{"alex", "sam", "kai", "mika", "noor", "jules", "rio", "tae", "ivy", "ash", "lee", "rue", "zoe", "max", "ola", "yui"}
	textNames  = []string{"general", "off-topic", "announcements", "help", "memes", "dev", "art", "music", "random", "bots"}
	voiceNames = []string{"Lounge", "Gaming", "Music", "Study", "AFK", "Stage"}
	roleNames  = []string{"Moderator", "Member", "Helper", "VIP", "Artist", "Developer", "Muted", "Booster"}
	rolePerms  = []uint64{1071698660929, 1099511627775, 8, 2147483647, 104324673, 68608}
	roleColors = []int{0, 0x1abc9c, 0x3498db, 0x9b59b6, 0xe91e63, 0xf1c40f, 0xe67e22}
)

// idGen hands out unique, increasing snowflakes for everything but guilds.
type idGen struct {
	baseMS int64
	n      int64
	skip   snowflake.ID
}

func (g *idGen) next() snowflake.ID {
	for {
		ms := g.baseMS + g.n/4096
		id := snowflake.ID(uint64(ms)<<22 | uint64(g.n%4096))
		g.n++
		if id != g.skip {
			return id
		}
	}
}

func discordMS(t time.Time) int64 {
	return t.UnixMilli() - int64(snowflake.Epoch)
}

// worldGen produces the deterministic world and, later, guilds the bot joins at
// runtime (Server.JoinGuild), continuing the same sequences.
type worldGen struct {
	opts      WorldOptions
	rng       *rand.Rand
	others    *idGen
	guildMS   int64
	nextGuild int
	bot       User
}

// generateWorld builds the deterministic world for opts. A big world takes
// a while (about 1 s and 200 MB per 100 000 guilds), so it stops with ctx's
// error as soon as ctx ends.
func generateWorld(ctx context.Context, opts WorldOptions, bot User) (*World, *worldGen, error) {
	seed := uint64(opts.Seed)
	gen := &worldGen{
		opts:    opts,
		rng:     rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15)),
		others:  &idGen{baseMS: discordMS(worldEpoch.AddDate(0, 0, 1)), skip: bot.ID},
		guildMS: discordMS(worldEpoch),
		bot:     bot,
	}
	w := &World{Bot: bot}
	users := &idGen{baseMS: discordMS(worldEpoch.AddDate(-1, 0, 0)), skip: bot.ID}
	for i := 0; i < opts.Users; i++ {
		if i%generateCheckEvery == 0 && ctx.Err() != nil {
			return nil, nil, fmt.Errorf("discordtest: generating the world: %w", context.Cause(ctx))
		}
		name := fmt.Sprintf("%s%d", userWords[gen.rng.IntN(len(userWords))], i)
		w.Users = append(w.Users, User{ID: users.next(), Username: name, GlobalName: titleCase(name)})
	}
	for i := 0; i < opts.Guilds; i++ {
		if i%generateCheckEvery == 0 && ctx.Err() != nil {
			return nil, nil, fmt.Errorf("discordtest: generating the world: %w", context.Cause(ctx))
		}
		w.Guilds = append(w.Guilds, gen.guild(w.Users))
	}
	w.reindex()
	return w, gen, nil
}

// generateCheckEvery is how many guilds (or users) are generated between
// two looks at the context: about a millisecond of work.
const generateCheckEvery = 128

// guild makes the next guild. Guild i has the snowflake timestamp epoch+i ms, which
// is what spreads guilds evenly over shards.
func (gen *worldGen) guild(users []User) Guild {
	opts, rng := gen.opts, gen.rng
	i := gen.nextGuild
	gen.nextGuild++
	low := rng.Uint64() & (1<<22 - 1)
	gid := snowflake.ID(uint64(gen.guildMS+int64(i))<<22 | low)
	joined := worldEpoch.Add(time.Duration(i) * time.Minute)
	g := Guild{
		ID:       gid,
		Name:     fmt.Sprintf("%s %s %d", adjectives[rng.IntN(len(adjectives))], nouns[rng.IntN(len(nouns))], i),
		JoinedAt: joined,
	}
	g.Roles = append(g.Roles, Role{ID: gid, Name: "@everyone", Permissions: everyonePermissions})
	for r := 1; r < opts.RolesPerGuild; r++ {
		g.Roles = append(g.Roles, Role{
			ID:          gen.others.next(),
			Name:        roleNames[(r-1)%len(roleNames)],
			Permissions: rolePerms[rng.IntN(len(rolePerms))],
			Position:    r,
			Color:       roleColors[rng.IntN(len(roleColors))],
			Hoist:       rng.IntN(2) == 0,
			Mentionable: rng.IntN(2) == 0,
		})
	}
	var category snowflake.ID
	for c := 0; c < opts.ChannelsPerGuild; c++ {
		ch := Channel{ID: gen.others.next(), GuildID: gid, Position: c}
		switch {
		case c == 0 && opts.ChannelsPerGuild > 1:
			ch.Type = ChannelTypeCategory
			ch.Name = "Channels"
			category = ch.ID
		case c%3 == 0 && c > 0:
			ch.Type = ChannelTypeVoice
			ch.Name = voiceNames[(c/3)%len(voiceNames)]
			ch.ParentID = category
		default:
			ch.Type = ChannelTypeText
			ch.Name = textNames[c%len(textNames)]
			if c >= len(textNames) {
				ch.Name = fmt.Sprintf("%s-%d", ch.Name, c)
			}
			ch.ParentID = category
			ch.Topic = "Talk about " + ch.Name
		}
		g.Channels = append(g.Channels, ch)
	}
	perm := rng.Perm(len(users))
	for m := 0; m < opts.MembersPerGuild && m < len(users); m++ {
		mem := Member{UserID: users[perm[m]].ID, Roles: []snowflake.ID{}, JoinedAt: joined.Add(time.Duration(m+1) * time.Hour)}
		for _, r := range g.Roles[1:] {
			if rng.IntN(3) == 0 {
				mem.Roles = append(mem.Roles, r.ID)
			}
		}
		g.Members = append(g.Members, mem)
	}
	if len(g.Members) > 0 {
		g.OwnerID = g.Members[0].UserID
	} else {
		g.OwnerID = gen.bot.ID
	}
	g.Members = append(g.Members, Member{UserID: gen.bot.ID, Roles: []snowflake.ID{}, JoinedAt: joined})
	return g
}

func titleCase(s string) string {
	if s == "" {
		return s
	}
	b := []byte(s)
	if b[0] >= 'a' && b[0] <= 'z' {
		b[0] -= 'a' - 'A'
	}
	return string(b)
}
