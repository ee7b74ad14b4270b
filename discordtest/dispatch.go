package discordtest

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/disgoorg/disgo/gateway"
	"github.com/disgoorg/snowflake/v2"
)

// ErrWithheld means every session that owns the guild lacks the intent the event
// needs, so none received it (never with Options.IgnoreIntents).
var ErrWithheld = errors.New("discordtest: event withheld by intents")

// Dispatched says where a dispatched event went.
type Dispatched struct {
	Type       string       `json:"t"`
	GuildID    snowflake.ID `json:"guild_id,omitempty"`
	Shard      int          `json:"shard"`
	ShardCount int          `json:"shard_count"`
	SessionID  string       `json:"session_id,omitempty"`
	// Seq is the event's sequence number in the session.
	Seq int `json:"seq"`
	// Attached is false when the session had no connection: the event waits in the
	// replay buffer for a RESUME.
	Attached bool `json:"attached"`
	// Extra lists further sessions that also received the event. That happens only
	// while two shard layouts (shard counts) are connected at once, as during
	// re-sharding; Discord delivers to both as well.
	Extra []Dispatched `json:"extra,omitempty"`
}

// Dispatch sends an op 0 event of type eventType (e.g. "MESSAGE_CREATE") to the
// session of the shard that owns guildID, with the shard count that session
// identified with. payload is marshalled to JSON; []byte and json.RawMessage are used
// as they are. A zero guildID is taken from the payload (guild_id, or id for GUILD_*
// events).
//
// The event is sequenced, recorded and kept in the session's replay buffer, even when
// the session is detached, so a RESUME replays it. Events that change the world
// (GUILD_CREATE/UPDATE/DELETE, CHANNEL_CREATE/UPDATE/DELETE,
// GUILD_MEMBER_ADD/UPDATE/REMOVE, GUILD_ROLE_CREATE/UPDATE/DELETE) are applied to it,
// even when no session receives them (the result is then ErrNoSession).
//
// Unless Options.SkipPayloadValidation is set, the payload must decode with disgo's
// own gateway types, and CHANNEL_* events must carry a guild channel type; otherwise
// the result wraps ErrInvalidPayload and nothing is sent. READY and RESUMED are
// reserved for the server.
func (s *Server) Dispatch(guildID snowflake.ID, eventType string, payload any) (Dispatched, error) {
	d, err := s.prepare(eventType, payload)
	if err != nil {
		return Dispatched{}, err
	}
	if guildID == 0 {
		guildID = guildFromPayload(eventType, d)
	}
	if guildID == 0 {
		return Dispatched{}, fmt.Errorf("%w: no guild id for %s", ErrInvalidPayload, eventType)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.isClosed() {
		return Dispatched{}, ErrClosed
	}
	s.applyWorldLocked(eventType, d, guildID)
	now := time.Now()
	var targets []*session
	for _, sess := range s.current {
		if ShardFor(guildID, sess.count) == sess.shard && s.liveLocked(sess, now) {
			targets = append(targets, sess)
		}
	}
	slices.SortFunc(targets, func(a, b *session) int { return b.created.Compare(a.created) })
	res, err := s.deliverToLocked(targets, eventType, d)
	res.GuildID = guildID
	if len(targets) == 0 {
		res.Shard, res.ShardCount = ShardFor(guildID, s.opts.Shards), s.opts.Shards
	}
	s.notifyLocked()
	return res, err
}

// DispatchToShard sends an op 0 event to the newest live session of shardID,
// whatever guild it concerns; otherwise it behaves like Dispatch.
func (s *Server) DispatchToShard(shardID int, eventType string, payload any) (Dispatched, error) {
	d, err := s.prepare(eventType, payload)
	if err != nil {
		return Dispatched{}, err
	}
	guildID := guildFromPayload(eventType, d)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.isClosed() {
		return Dispatched{}, ErrClosed
	}
	if guildID != 0 {
		s.applyWorldLocked(eventType, d, guildID)
	}
	var targets []*session
	if sess := s.newestSessionLocked(shardID, true); sess != nil {
		targets = append(targets, sess)
	}
	res, err := s.deliverToLocked(targets, eventType, d)
	res.GuildID = guildID
	if len(targets) == 0 {
		res.Shard = shardID
	}
	s.notifyLocked()
	return res, err
}

func (s *Server) isClosed() bool {
	select {
	case <-s.done:
		return true
	default:
		return false
	}
}

func (s *Server) deliverToLocked(targets []*session, eventType string, d []byte) (Dispatched, error) {
	res := Dispatched{Type: eventType}
	if len(targets) == 0 {
		return res, ErrNoSession
	}
	var got []Dispatched
	for _, sess := range targets {
		payload, ok := s.filterIntents(sess, eventType, d)
		if !ok {
			s.counters.Withheld++
			continue
		}
		seq := s.deliverLocked(sess, eventType, payload)
		got = append(got, Dispatched{
			Type: eventType, Shard: sess.shard, ShardCount: sess.count,
			SessionID: sess.id, Seq: seq, Attached: sess.conn != nil,
		})
	}
	if len(got) == 0 {
		res.Shard, res.ShardCount = targets[0].shard, targets[0].count
		return res, ErrWithheld
	}
	res = got[0]
	if len(got) > 1 {
		res.Extra = got[1:]
	}
	return res, nil
}

// reservedEvents are dispatched only by the server: a stray READY would reset the
// client's session.
var reservedEvents = map[string]bool{"READY": true, "RESUMED": true}

// guildChannelTypes are the channel types disgo accepts in guild channel events.
var guildChannelTypes = map[int]bool{0: true, 2: true, 4: true, 5: true, 10: true, 11: true, 12: true, 13: true, 15: true, 16: true}

func (s *Server) prepare(eventType string, payload any) ([]byte, error) {
	if !validEventName(eventType) {
		return nil, fmt.Errorf("%w: bad event type %q", ErrInvalidPayload, eventType)
	}
	if reservedEvents[eventType] {
		return nil, fmt.Errorf("%w: %s is sent by the server itself", ErrInvalidPayload, eventType)
	}
	var d []byte
	switch p := payload.(type) {
	case json.RawMessage:
		d = p
	case []byte:
		d = p
	default:
		b, err := json.Marshal(payload)
		if err != nil {
			return nil, fmt.Errorf("%w: %v", ErrInvalidPayload, err)
		}
		d = b
	}
	if !json.Valid(d) {
		return nil, fmt.Errorf("%w: payload is not valid JSON", ErrInvalidPayload)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, d); err == nil {
		d = compact.Bytes()
	}
	switch eventType {
	case "CHANNEL_CREATE", "CHANNEL_UPDATE", "CHANNEL_DELETE", "THREAD_CREATE", "THREAD_UPDATE", "THREAD_DELETE":
		// disgo type-asserts these to guild channels: any other type panics it.
		var ch struct {
			Type *int `json:"type"`
		}
		if err := json.Unmarshal(d, &ch); err != nil || ch.Type == nil || !guildChannelTypes[*ch.Type] {
			return nil, fmt.Errorf("%w: %s needs a guild channel type", ErrInvalidPayload, eventType)
		}
	}
	if !s.opts.SkipPayloadValidation {
		var m gateway.Message
		if err := json.Unmarshal(encodeDispatch(1, eventType, d), &m); err != nil {
			return nil, fmt.Errorf("%w: disgo cannot decode it: %v", ErrInvalidPayload, err)
		}
	}
	return d, nil
}

func validEventName(t string) bool {
	if t == "" || len(t) > 64 {
		return false
	}
	for i := 0; i < len(t); i++ {
		c := t[i]
		if !(c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

func guildFromPayload(eventType string, d []byte) snowflake.ID {
	var p struct {
		ID      snowflake.ID `json:"id"`
		GuildID snowflake.ID `json:"guild_id"`
	}
	if err := json.Unmarshal(d, &p); err != nil {
		return 0
	}
	switch eventType {
	case "GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE":
		if p.ID != 0 {
			return p.ID
		}
	}
	return p.GuildID
}

// Inbound shapes for world updates: pointers tell "absent" from "zero".
type inUser struct {
	ID         snowflake.ID `json:"id"`
	Username   string       `json:"username"`
	GlobalName *string      `json:"global_name"`
	Bot        bool         `json:"bot"`
}

type inChannel struct {
	ID       snowflake.ID  `json:"id"`
	GuildID  snowflake.ID  `json:"guild_id"`
	Type     int           `json:"type"`
	Name     *string       `json:"name"`
	Position *int          `json:"position"`
	ParentID *snowflake.ID `json:"parent_id"`
	Topic    *string       `json:"topic"`
}

type inRole struct {
	ID          snowflake.ID `json:"id"`
	Name        *string      `json:"name"`
	Permissions *string      `json:"permissions"`
	Position    *int         `json:"position"`
	Color       *int         `json:"color"`
	Hoist       *bool        `json:"hoist"`
	Mentionable *bool        `json:"mentionable"`
}

type inMember struct {
	GuildID  snowflake.ID   `json:"guild_id"`
	User     *inUser        `json:"user"`
	Nick     *string        `json:"nick"`
	Roles    []snowflake.ID `json:"roles"`
	JoinedAt *time.Time     `json:"joined_at"`
}

type inGuild struct {
	ID          snowflake.ID  `json:"id"`
	Name        *string       `json:"name"`
	OwnerID     *snowflake.ID `json:"owner_id"`
	Unavailable bool          `json:"unavailable"`
	JoinedAt    *time.Time    `json:"joined_at"`
	Channels    []inChannel   `json:"channels"`
	Roles       []inRole      `json:"roles"`
	Members     []inMember    `json:"members"`
}

func (c *inChannel) applyTo(ch *Channel) {
	ch.ID = c.ID
	ch.Type = c.Type
	if c.Name != nil {
		ch.Name = *c.Name
	}
	if c.Position != nil {
		ch.Position = *c.Position
	}
	if c.ParentID != nil {
		ch.ParentID = *c.ParentID
	}
	if c.Topic != nil {
		ch.Topic = *c.Topic
	}
}

func (r *inRole) applyTo(role *Role) {
	role.ID = r.ID
	if r.Name != nil {
		role.Name = *r.Name
	}
	if r.Permissions != nil {
		if p, err := strconv.ParseUint(*r.Permissions, 10, 64); err == nil {
			role.Permissions = p
		}
	}
	if r.Position != nil {
		role.Position = *r.Position
	}
	if r.Color != nil {
		role.Color = *r.Color
	}
	if r.Hoist != nil {
		role.Hoist = *r.Hoist
	}
	if r.Mentionable != nil {
		role.Mentionable = *r.Mentionable
	}
}

// learnUserLocked adds an unknown user to the pool so that REST lookups find it.
func (s *Server) learnUserLocked(u *inUser) {
	if u == nil || u.ID == 0 || u.ID == s.world.Bot.ID {
		return
	}
	if existing, ok := s.world.User(u.ID); ok {
		if u.Username != "" {
			existing.Username = u.Username
		}
		if u.GlobalName != nil {
			existing.GlobalName = *u.GlobalName
		}
		return
	}
	nu := User{ID: u.ID, Username: u.Username, Bot: u.Bot}
	if u.GlobalName != nil {
		nu.GlobalName = *u.GlobalName
	}
	s.world.Users = append(s.world.Users, nu)
	s.world.reindex()
}

func (m *inMember) applyTo(mem *Member) {
	if m.User != nil {
		mem.UserID = m.User.ID
	}
	if m.Nick != nil {
		mem.Nick = *m.Nick
	}
	if m.Roles != nil {
		mem.Roles = slices.Clone(m.Roles)
	}
	if m.JoinedAt != nil {
		mem.JoinedAt = *m.JoinedAt
	}
}

// applyWorldLocked keeps the world (and so REST) consistent with dispatched events.
// Payloads it does not understand leave the world as it is.
func (s *Server) applyWorldLocked(eventType string, d []byte, guildID snowflake.ID) {
	w := s.world
	g, _ := w.Guild(guildID)
	changed := true
	switch eventType {
	case "GUILD_CREATE", "GUILD_UPDATE":
		var in inGuild
		if json.Unmarshal(d, &in) != nil || in.ID == 0 {
			return
		}
		if g == nil {
			if eventType != "GUILD_CREATE" {
				return
			}
			w.Guilds = append(w.Guilds, Guild{ID: in.ID, OwnerID: s.opts.AppID, JoinedAt: time.Now()})
			g = &w.Guilds[len(w.Guilds)-1]
			g.Name = "Guild " + in.ID.String()
		}
		if in.Name != nil {
			g.Name = *in.Name
		}
		if in.OwnerID != nil {
			g.OwnerID = *in.OwnerID
		}
		if in.JoinedAt != nil {
			g.JoinedAt = *in.JoinedAt
		}
		if in.Channels != nil {
			g.Channels = g.Channels[:0]
			for _, c := range in.Channels {
				ch := Channel{GuildID: g.ID}
				c.applyTo(&ch)
				g.Channels = append(g.Channels, ch)
			}
		}
		if in.Roles != nil {
			g.Roles = g.Roles[:0]
			for _, r := range in.Roles {
				var role Role
				r.applyTo(&role)
				g.Roles = append(g.Roles, role)
			}
		}
		if in.Members != nil {
			g.Members = g.Members[:0]
			for _, m := range in.Members {
				s.learnUserLocked(m.User)
				mem := Member{Roles: []snowflake.ID{}}
				m.applyTo(&mem)
				g.Members = append(g.Members, mem)
			}
		}
	case "GUILD_DELETE":
		var in inGuild
		if json.Unmarshal(d, &in) != nil || in.Unavailable || g == nil {
			return
		}
		w.Guilds = slices.DeleteFunc(w.Guilds, func(x Guild) bool { return x.ID == guildID })
	case "CHANNEL_CREATE", "CHANNEL_UPDATE":
		var in inChannel
		if json.Unmarshal(d, &in) != nil || in.ID == 0 || g == nil {
			return
		}
		i := slices.IndexFunc(g.Channels, func(c Channel) bool { return c.ID == in.ID })
		if i < 0 {
			g.Channels = append(g.Channels, Channel{GuildID: g.ID})
			i = len(g.Channels) - 1
		}
		in.applyTo(&g.Channels[i])
	case "CHANNEL_DELETE":
		var in inChannel
		if json.Unmarshal(d, &in) != nil || g == nil {
			return
		}
		g.Channels = slices.DeleteFunc(g.Channels, func(c Channel) bool { return c.ID == in.ID })
	case "GUILD_MEMBER_ADD", "GUILD_MEMBER_UPDATE":
		var in inMember
		if json.Unmarshal(d, &in) != nil || in.User == nil || in.User.ID == 0 || g == nil {
			return
		}
		s.learnUserLocked(in.User)
		i := slices.IndexFunc(g.Members, func(m Member) bool { return m.UserID == in.User.ID })
		if i < 0 {
			g.Members = append(g.Members, Member{Roles: []snowflake.ID{}, JoinedAt: time.Now()})
			i = len(g.Members) - 1
		}
		in.applyTo(&g.Members[i])
	case "GUILD_MEMBER_REMOVE":
		var in inMember
		if json.Unmarshal(d, &in) != nil || in.User == nil || g == nil {
			return
		}
		g.Members = slices.DeleteFunc(g.Members, func(m Member) bool { return m.UserID == in.User.ID })
	case "GUILD_ROLE_CREATE", "GUILD_ROLE_UPDATE":
		var in struct {
			Role inRole `json:"role"`
		}
		if json.Unmarshal(d, &in) != nil || in.Role.ID == 0 || g == nil {
			return
		}
		i := slices.IndexFunc(g.Roles, func(r Role) bool { return r.ID == in.Role.ID })
		if i < 0 {
			g.Roles = append(g.Roles, Role{})
			i = len(g.Roles) - 1
		}
		in.Role.applyTo(&g.Roles[i])
	case "GUILD_ROLE_DELETE":
		var in struct {
			RoleID snowflake.ID `json:"role_id"`
		}
		if json.Unmarshal(d, &in) != nil || g == nil {
			return
		}
		g.Roles = slices.DeleteFunc(g.Roles, func(r Role) bool { return r.ID == in.RoleID })
		for i := range g.Members {
			g.Members[i].Roles = slices.DeleteFunc(g.Members[i].Roles, func(id snowflake.ID) bool { return id == in.RoleID })
		}
	default:
		changed = false
	}
	if changed {
		w.reindex()
	}
}
