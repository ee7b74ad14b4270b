package discordtest

import (
	"encoding/json"

	"github.com/disgoorg/disgo/gateway"
	"github.com/disgoorg/snowflake/v2"
)

// intentFor returns the intent Discord requires for an event (0 = none). dm tells
// direct-message events (no guild_id) apart.
func intentFor(eventType string, dm bool) gateway.Intents {
	switch eventType {
	case "GUILD_CREATE", "GUILD_UPDATE", "GUILD_DELETE", "GUILD_ROLE_CREATE", "GUILD_ROLE_UPDATE", "GUILD_ROLE_DELETE",
		"CHANNEL_CREATE", "CHANNEL_UPDATE", "CHANNEL_DELETE", "CHANNEL_PINS_UPDATE",
		"THREAD_CREATE", "THREAD_UPDATE", "THREAD_DELETE", "THREAD_LIST_SYNC", "THREAD_MEMBER_UPDATE", "STAGE_INSTANCE_CREATE",
		"STAGE_INSTANCE_UPDATE", "STAGE_INSTANCE_DELETE":
		if dm && eventType == "CHANNEL_PINS_UPDATE" {
			return gateway.IntentDirectMessages
		}
		return gateway.IntentGuilds
	case "GUILD_MEMBER_ADD", "GUILD_MEMBER_UPDATE", "GUILD_MEMBER_REMOVE", "THREAD_MEMBERS_UPDATE":
		return gateway.IntentGuildMembers
	case "GUILD_BAN_ADD", "GUILD_BAN_REMOVE", "GUILD_AUDIT_LOG_ENTRY_CREATE":
		return gateway.IntentGuildModeration
	case "GUILD_EMOJIS_UPDATE", "GUILD_STICKERS_UPDATE", "GUILD_SOUNDBOARD_SOUND_CREATE", "GUILD_SOUNDBOARD_SOUND_UPDATE", "GUILD_SOUNDBOARD_SOUND_DELETE":
		return gateway.IntentGuildExpressions
	case "GUILD_INTEGRATIONS_UPDATE", "INTEGRATION_CREATE", "INTEGRATION_UPDATE", "INTEGRATION_DELETE":
		return gateway.IntentGuildIntegrations
	case "WEBHOOKS_UPDATE":
		return gateway.IntentGuildWebhooks
	case "INVITE_CREATE", "INVITE_DELETE":
		return gateway.IntentGuildInvites
	case "VOICE_STATE_UPDATE":
		return gateway.IntentGuildVoiceStates
	case "PRESENCE_UPDATE":
		return gateway.IntentGuildPresences
	case "MESSAGE_CREATE", "MESSAGE_UPDATE", "MESSAGE_DELETE", "MESSAGE_DELETE_BULK":
		if dm {
			return gateway.IntentDirectMessages
		}
		return gateway.IntentGuildMessages
	case "MESSAGE_REACTION_ADD", "MESSAGE_REACTION_REMOVE", "MESSAGE_REACTION_REMOVE_ALL", "MESSAGE_REACTION_REMOVE_EMOJI":
		if dm {
			return gateway.IntentDirectMessageReactions
		}
		return gateway.IntentGuildMessageReactions
	case "MESSAGE_POLL_VOTE_ADD", "MESSAGE_POLL_VOTE_REMOVE":
		if dm {
			return gateway.IntentDirectMessagePolls
		}
		return gateway.IntentGuildMessagePolls
	case "TYPING_START":
		if dm {
			return gateway.IntentDirectMessageTyping
		}
		return gateway.IntentGuildMessageTyping
	case "GUILD_SCHEDULED_EVENT_CREATE", "GUILD_SCHEDULED_EVENT_UPDATE", "GUILD_SCHEDULED_EVENT_DELETE",
		"GUILD_SCHEDULED_EVENT_USER_ADD", "GUILD_SCHEDULED_EVENT_USER_REMOVE":
		return gateway.IntentGuildScheduledEvents
	case "AUTO_MODERATION_RULE_CREATE", "AUTO_MODERATION_RULE_UPDATE", "AUTO_MODERATION_RULE_DELETE":
		return gateway.IntentAutoModerationConfiguration
	case "AUTO_MODERATION_ACTION_EXECUTION":
		return gateway.IntentAutoModerationExecution
	}
	return 0
}

// contentFields are the message fields Discord sends empty to a session without
// MESSAGE_CONTENT; poll is left out altogether.
var contentFields = []string{"embeds", "attachments", "components"}

// filterIntents gates one dispatch for sess as Discord does (unless
// Options.IgnoreIntents): it withholds events of intents the session did not ask
// for, blanks message content without MESSAGE_CONTENT (except in DMs, in messages
// that mention the bot and in the bot's own messages), and keeps GUILD_CREATE's
// members to the bot without GUILD_PRESENCES.
func (s *Server) filterIntents(sess *session, eventType string, d []byte) ([]byte, bool) {
	if s.opts.IgnoreIntents {
		return d, true
	}
	var probe struct {
		GuildID snowflake.ID `json:"guild_id"`
	}
	_ = json.Unmarshal(d, &probe)
	dm := probe.GuildID == 0
	need := intentFor(eventType, dm)
	if need != 0 && sess.intents&int64(need) == 0 {
		return nil, false
	}
	switch eventType {
	case "MESSAGE_CREATE", "MESSAGE_UPDATE":
		if !dm && sess.intents&int64(gateway.IntentMessageContent) == 0 {
			return s.withoutContent(eventType, d), true
		}
	case "GUILD_CREATE":
		if sess.intents&int64(gateway.IntentGuildPresences) == 0 {
			return s.withoutPresenceMembers(d), true
		}
	}
	return d, true
}

// withoutContent blanks what the MESSAGE_CONTENT intent covers in a guild
// message, unless the message mentions the bot or the bot wrote it.
func (s *Server) withoutContent(eventType string, d []byte) []byte {
	var msg struct {
		Author *struct {
			ID snowflake.ID `json:"id"`
		} `json:"author"`
		Mentions []struct {
			ID snowflake.ID `json:"id"`
		} `json:"mentions"`
	}
	_ = json.Unmarshal(d, &msg)
	if msg.Author != nil && msg.Author.ID == s.opts.AppID {
		return d
	}
	for _, m := range msg.Mentions {
		if m.ID == s.opts.AppID {
			return d
		}
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(d, &obj); err != nil {
		return d
	}
	if _, ok := obj["content"]; ok || eventType == "MESSAGE_CREATE" {
		obj["content"] = json.RawMessage(`""`)
	}
	for _, k := range contentFields {
		if _, ok := obj[k]; ok {
			obj[k] = json.RawMessage(`[]`)
		}
	}
	delete(obj, "poll")
	s.counters.ContentBlanked++
	return mustJSON(obj)
}

// withoutPresenceMembers keeps only the bot in a GUILD_CREATE's members and
// empties its presences: without GUILD_PRESENCES, Discord sends only the bot
// and users in voice channels (the fake has no voice states).
func (s *Server) withoutPresenceMembers(d []byte) []byte {
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(d, &obj); err != nil {
		return d
	}
	raw, ok := obj["members"]
	if !ok {
		return d
	}
	var members []json.RawMessage
	if err := json.Unmarshal(raw, &members); err != nil {
		return d
	}
	kept := make([]json.RawMessage, 0, 1)
	for _, m := range members {
		var mem struct {
			User struct {
				ID snowflake.ID `json:"id"`
			} `json:"user"`
		}
		if json.Unmarshal(m, &mem) == nil && mem.User.ID == s.opts.AppID {
			kept = append(kept, m)
		}
	}
	obj["members"] = mustJSON(kept)
	if _, ok := obj["presences"]; ok {
		obj["presences"] = json.RawMessage(`[]`)
	}
	return mustJSON(obj)
}
