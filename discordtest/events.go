package discordtest

import (
	"encoding/json"
	"fmt"
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

// SendUserMessage dispatches a MESSAGE_CREATE as Discord sends it when a user posts
// content in channelID: with guild_id, author and member taken from the world. A
// zero authorID picks the guild's first human member.
func (s *Server) SendUserMessage(channelID, authorID snowflake.ID, content string) (Dispatched, error) {
	s.mu.Lock()
	ch, ok := s.world.Channel(channelID)
	if !ok {
		s.mu.Unlock()
		return Dispatched{}, fmt.Errorf("discordtest: unknown channel %s", channelID)
	}
	g, _ := s.world.Guild(ch.GuildID)
	if authorID == 0 {
		for _, m := range g.Members {
			if m.UserID != s.opts.AppID {
				authorID = m.UserID
				break
			}
		}
	}
	author := wireUser{ID: authorID, Username: "user" + authorID.String(), Discriminator: "0"}
	if u, ok := s.world.User(authorID); ok {
		author = u.wire()
	}
	gid := g.ID
	msg := wireMessage{
		ID: s.newID(), ChannelID: ch.ID, GuildID: &gid, Author: author, Content: content,
		Timestamp: discordTime(time.Now()), Mentions: []any{}, MentionRoles: []any{}, Attachments: []any{},
		Embeds: json.RawMessage("[]"), Components: json.RawMessage("[]"),
	}
	if m, ok := s.world.Member(g.ID, authorID); ok {
		wm := s.world.wireMember(m, 0)
		wm.User = nil
		msg.Member = &wm
	}
	s.mu.Unlock()
	return s.Dispatch(gid, "MESSAGE_CREATE", msg)
}
