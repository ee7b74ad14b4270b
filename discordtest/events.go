package discordtest

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/disgoorg/snowflake/v2"
)

// NewID returns a fresh snowflake with the current time, unique within the server:
// handy for message and object ids in injected events.
func (s *Server) NewID() snowflake.ID { return s.newID() }

// JoinGuild makes the bot join a new guild shaped like the generated ones (channels,
// roles, members from the user pool) and dispatches its full GUILD_CREATE to the
// owning shard, which disgo reports as a GuildJoin. The guild is added to the world
// even when no session owns it (the error is then ErrNoSession).
func (s *Server) JoinGuild(name string) (Guild, Dispatched, error) {
	s.mu.Lock()
	g := s.gen.guild(s.world.Users)
	if name != "" {
		g.Name = name
	}
	g.JoinedAt = time.Now()
	payload := s.world.guildCreate(&g, 0, true) // trimmed per session at delivery
	s.mu.Unlock()
	d, err := s.Dispatch(g.ID, "GUILD_CREATE", payload)
	return g, d, err
}

// LeaveGuild removes the bot from guildID: the owning shard gets GUILD_DELETE
// (without unavailable, which disgo reports as a GuildLeave) and the guild leaves
// the world.
func (s *Server) LeaveGuild(guildID snowflake.ID) (Dispatched, error) {
	return s.Dispatch(guildID, "GUILD_DELETE", map[string]any{"id": guildID})
}

// UserMessage describes a message a user posts in a guild, for SendMessage.
// Every field but Content has a default.
type UserMessage struct {
	// ChannelID is where the message is posted. Zero: the first text channel of
	// GuildID.
	ChannelID snowflake.ID
	// GuildID picks the guild when ChannelID is zero. Zero: the world's first
	// guild.
	GuildID snowflake.ID
	// AuthorID is the user who writes. Zero: the guild's first human member.
	AuthorID snowflake.ID
	// Content is the text. Mentions written the way Discord encodes them
	// (<@id> or <@!id>) of the bot or of known users fill the message's mentions,
	// so "<@BOT_ID> hi" reaches a bot without MESSAGE_CONTENT with its text.
	Content string
}

// SentMessage is the message SendMessage dispatched and where it went.
type SentMessage struct {
	ID         snowflake.ID `json:"id"`
	ChannelID  snowflake.ID `json:"channel_id"`
	GuildID    snowflake.ID `json:"guild_id"`
	AuthorID   snowflake.ID `json:"author_id"`
	Content    string       `json:"content"`
	Dispatched Dispatched   `json:"dispatched"`
}

// ErrNoChannel means SendMessage found no channel to post in: an unknown
// channel or guild, a channel that is not a text channel, or a guild without one.
var ErrNoChannel = errors.New("discordtest: no text channel to post in")

// SendMessage dispatches a MESSAGE_CREATE as Discord sends it when a user posts
// m: with guild_id, author and member taken from the world. Whatever the
// dispatch's outcome (ErrNoSession, ErrWithheld), the returned message carries
// the id it was sent with.
func (s *Server) SendMessage(m UserMessage) (SentMessage, error) {
	if m.Content == "" {
		return SentMessage{}, fmt.Errorf("%w: empty content", ErrInvalidPayload)
	}
	s.mu.Lock()
	msg, err := s.userMessageLocked(m)
	s.mu.Unlock()
	if err != nil {
		return SentMessage{}, err
	}
	sent := SentMessage{ID: msg.ID, ChannelID: msg.ChannelID, GuildID: *msg.GuildID, AuthorID: msg.Author.ID, Content: msg.Content}
	sent.Dispatched, err = s.Dispatch(sent.GuildID, "MESSAGE_CREATE", msg)
	return sent, err
}

func (s *Server) userMessageLocked(m UserMessage) (wireMessage, error) {
	w := s.world
	var ch *Channel
	switch {
	case m.ChannelID != 0:
		c, ok := w.Channel(m.ChannelID)
		if !ok {
			return wireMessage{}, fmt.Errorf("%w: unknown channel %s", ErrNoChannel, m.ChannelID)
		}
		ch = c
	default:
		gid := m.GuildID
		if gid == 0 {
			if len(w.Guilds) == 0 {
				return wireMessage{}, fmt.Errorf("%w: the bot is in no guild", ErrNoChannel)
			}
			gid = w.Guilds[0].ID
		}
		if _, ok := w.Guild(gid); !ok {
			return wireMessage{}, fmt.Errorf("%w: unknown guild %s", ErrNoChannel, gid)
		}
		c, ok := w.FirstTextChannel(gid)
		if !ok {
			return wireMessage{}, fmt.Errorf("%w: guild %s has no text channel", ErrNoChannel, gid)
		}
		ch = c
	}
	if ch.Type == ChannelTypeCategory {
		return wireMessage{}, fmt.Errorf("%w: channel %s is a category", ErrNoChannel, ch.ID)
	}
	g, _ := w.Guild(ch.GuildID)
	authorID := m.AuthorID
	if authorID == 0 {
		for _, mem := range g.Members {
			if mem.UserID != s.opts.AppID {
				authorID = mem.UserID
				break
			}
		}
	}
	if authorID == 0 {
		return wireMessage{}, fmt.Errorf("%w: guild %s has no human member to write", ErrInvalidPayload, g.ID)
	}
	author := wireUser{ID: authorID, Username: "user" + authorID.String(), Discriminator: "0"}
	if u, ok := w.User(authorID); ok {
		author = u.wire()
	}
	gid := g.ID
	msg := wireMessage{
		ID: s.newID(), ChannelID: ch.ID, GuildID: &gid, Author: author, Content: m.Content,
		Timestamp: discordTime(time.Now()), Mentions: s.mentionsLocked(g, m.Content), MentionRoles: []any{}, Attachments: []any{},
		Embeds: json.RawMessage("[]"), Components: json.RawMessage("[]"),
	}
	if mem, ok := w.Member(g.ID, authorID); ok {
		wm := w.wireMember(mem, 0)
		wm.User = nil
		msg.Member = &wm
	}
	return msg, nil
}

// userMention matches Discord's user mention syntax, <@id> or <@!id>.
var userMention = regexp.MustCompile(`<@!?([0-9]{1,20})>`)

// mentionsLocked lists the users content mentions that Discord would resolve:
// the bot and known users, each once, with their member (as Discord sends
// mentions in guild messages).
func (s *Server) mentionsLocked(g *Guild, content string) []any {
	mentions := []any{}
	seen := map[snowflake.ID]bool{}
	for _, sm := range userMention.FindAllStringSubmatch(content, -1) {
		id, err := snowflake.Parse(sm[1])
		if err != nil || seen[id] {
			continue
		}
		u, ok := s.world.User(id)
		if id == s.opts.AppID {
			u, ok = &s.world.Bot, true
		}
		if !ok {
			continue
		}
		seen[id] = true
		mention := struct {
			wireUser
			Member *wireMember `json:"member,omitempty"`
		}{wireUser: u.wire()}
		if mem, ok := s.world.Member(g.ID, id); ok {
			wm := s.world.wireMember(mem, 0)
			wm.User = nil
			mention.Member = &wm
		}
		mentions = append(mentions, mention)
	}
	return mentions
}

// SendUserMessage dispatches a MESSAGE_CREATE as Discord sends it when a user posts
// content in channelID (see SendMessage). A zero authorID picks the guild's first
// human member.
func (s *Server) SendUserMessage(channelID, authorID snowflake.ID, content string) (Dispatched, error) {
	if channelID == 0 {
		return Dispatched{}, fmt.Errorf("%w: no channel", ErrNoChannel)
	}
	sent, err := s.SendMessage(UserMessage{ChannelID: channelID, AuthorID: authorID, Content: content})
	return sent.Dispatched, err
}
