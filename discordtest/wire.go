package discordtest

import (
	"encoding/json"
	"strconv"
	"time"

	"github.com/disgoorg/snowflake/v2"
)

// The types in this file are the JSON shapes Discord sends. Field order does not matter
// to clients, but the types do: snowflakes are quoted strings, permissions are quoted
// integers and timestamps are RFC 3339, or disgo fails to decode the payload.

// discordTime formats like Discord ("2024-01-01T00:00:00.000000+00:00").
type discordTime time.Time

func (t discordTime) MarshalJSON() ([]byte, error) {
	return []byte(`"` + time.Time(t).UTC().Format("2006-01-02T15:04:05.000000-07:00") + `"`), nil
}

func (t *discordTime) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		return nil
	}
	var tt time.Time
	if err := json.Unmarshal(b, &tt); err != nil {
		return err
	}
	*t = discordTime(tt)
	return nil
}

type wireUser struct {
	ID            snowflake.ID `json:"id"`
	Username      string       `json:"username"`
	Discriminator string       `json:"discriminator"`
	GlobalName    *string      `json:"global_name"`
	Avatar        *string      `json:"avatar"`
	Bot           bool         `json:"bot,omitempty"`
	PublicFlags   int          `json:"public_flags"`
}

// wireSelfUser is the OAuth2 user in READY and GET /users/@me.
type wireSelfUser struct {
	wireUser
	Flags       int  `json:"flags"`
	MFAEnabled  bool `json:"mfa_enabled"`
	Verified    bool `json:"verified"`
	PremiumType int  `json:"premium_type"`
}

type wireRole struct {
	ID           snowflake.ID `json:"id"`
	Name         string       `json:"name"`
	Color        int          `json:"color"`
	Hoist        bool         `json:"hoist"`
	Icon         *string      `json:"icon"`
	UnicodeEmoji *string      `json:"unicode_emoji"`
	Position     int          `json:"position"`
	Permissions  string       `json:"permissions"`
	Managed      bool         `json:"managed"`
	Mentionable  bool         `json:"mentionable"`
	Flags        int          `json:"flags"`
}

type wireMember struct {
	User                       *wireUser      `json:"user,omitempty"`
	Nick                       *string        `json:"nick"`
	Avatar                     *string        `json:"avatar"`
	Roles                      []snowflake.ID `json:"roles"`
	JoinedAt                   discordTime    `json:"joined_at"`
	PremiumSince               *discordTime   `json:"premium_since"`
	Deaf                       bool           `json:"deaf"`
	Mute                       bool           `json:"mute"`
	Flags                      int            `json:"flags"`
	Pending                    bool           `json:"pending"`
	CommunicationDisabledUntil *discordTime   `json:"communication_disabled_until"`
	GuildID                    *snowflake.ID  `json:"guild_id,omitempty"`
}

type wireOverwrite struct {
	ID    snowflake.ID `json:"id"`
	Type  int          `json:"type"`
	Allow string       `json:"allow"`
	Deny  string       `json:"deny"`
}

type wireChannel struct {
	ID                   snowflake.ID    `json:"id"`
	Type                 int             `json:"type"`
	GuildID              *snowflake.ID   `json:"guild_id,omitempty"`
	Name                 string          `json:"name"`
	Position             int             `json:"position"`
	PermissionOverwrites []wireOverwrite `json:"permission_overwrites"`
	ParentID             *snowflake.ID   `json:"parent_id"`
	NSFW                 bool            `json:"nsfw"`
	Flags                int             `json:"flags"`
	// Text channels.
	Topic            *string       `json:"topic,omitempty"`
	LastMessageID    *snowflake.ID `json:"last_message_id,omitempty"`
	RateLimitPerUser *int          `json:"rate_limit_per_user,omitempty"`
	// Voice channels.
	Bitrate          *int    `json:"bitrate,omitempty"`
	UserLimit        *int    `json:"user_limit,omitempty"`
	RTCRegion        *string `json:"rtc_region,omitempty"`
	VideoQualityMode *int    `json:"video_quality_mode,omitempty"`
}

type wireGuild struct {
	ID                          snowflake.ID `json:"id"`
	Name                        string       `json:"name"`
	Icon                        *string      `json:"icon"`
	Splash                      *string      `json:"splash"`
	DiscoverySplash             *string      `json:"discovery_splash"`
	OwnerID                     snowflake.ID `json:"owner_id"`
	AFKChannelID                *string      `json:"afk_channel_id"`
	AFKTimeout                  int          `json:"afk_timeout"`
	WidgetEnabled               bool         `json:"widget_enabled"`
	VerificationLevel           int          `json:"verification_level"`
	DefaultMessageNotifications int          `json:"default_message_notifications"`
	ExplicitContentFilter       int          `json:"explicit_content_filter"`
	Roles                       []wireRole   `json:"roles"`
	Emojis                      []any        `json:"emojis"`
	Stickers                    []any        `json:"stickers"`
	Features                    []string     `json:"features"`
	MFALevel                    int          `json:"mfa_level"`
	SystemChannelID             *string      `json:"system_channel_id"`
	SystemChannelFlags          int          `json:"system_channel_flags"`
	RulesChannelID              *string      `json:"rules_channel_id"`
	VanityURLCode               *string      `json:"vanity_url_code"`
	Description                 *string      `json:"description"`
	Banner                      *string      `json:"banner"`
	PremiumTier                 int          `json:"premium_tier"`
	PremiumSubscriptionCount    int          `json:"premium_subscription_count"`
	PreferredLocale             string       `json:"preferred_locale"`
	PublicUpdatesChannelID      *string      `json:"public_updates_channel_id"`
	NSFWLevel                   int          `json:"nsfw_level"`
	PremiumProgressBarEnabled   bool         `json:"premium_progress_bar_enabled"`
	ApproximateMemberCount      *int         `json:"approximate_member_count,omitempty"`
	ApproximatePresenceCount    *int         `json:"approximate_presence_count,omitempty"`
}

// wireGatewayGuild is GUILD_CREATE's payload: the guild plus what only the gateway sends.
type wireGatewayGuild struct {
	wireGuild
	JoinedAt             discordTime   `json:"joined_at"`
	Large                bool          `json:"large"`
	Unavailable          bool          `json:"unavailable"`
	MemberCount          int           `json:"member_count"`
	VoiceStates          []any         `json:"voice_states"`
	Members              []wireMember  `json:"members"`
	Channels             []wireChannel `json:"channels"`
	Threads              []any         `json:"threads"`
	Presences            []any         `json:"presences"`
	StageInstances       []any         `json:"stage_instances"`
	GuildScheduledEvents []any         `json:"guild_scheduled_events"`
	SoundboardSounds     []any         `json:"soundboard_sounds"`
}

type wireUnavailableGuild struct {
	ID          snowflake.ID `json:"id"`
	Unavailable bool         `json:"unavailable"`
}

type wireReady struct {
	V                   int                    `json:"v"`
	User                wireSelfUser           `json:"user"`
	Guilds              []wireUnavailableGuild `json:"guilds"`
	SessionID           string                 `json:"session_id"`
	SessionType         string                 `json:"session_type"`
	ResumeGatewayURL    string                 `json:"resume_gateway_url"`
	Shard               [2]int                 `json:"shard"`
	Application         wireReadyApplication   `json:"application"`
	PrivateChannels     []any                  `json:"private_channels"`
	Relationships       []any                  `json:"relationships"`
	Presences           []any                  `json:"presences"`
	GuildJoinRequests   []any                  `json:"guild_join_requests"`
	GeoOrderedRTCRegion []string               `json:"geo_ordered_rtc_regions"`
	UserSettings        struct{}               `json:"user_settings"`
	Trace               []string               `json:"_trace"`
}

type wireReadyApplication struct {
	ID    snowflake.ID `json:"id"`
	Flags int          `json:"flags"`
}

type wireMessage struct {
	ID              snowflake.ID    `json:"id"`
	Type            int             `json:"type"`
	ChannelID       snowflake.ID    `json:"channel_id"`
	GuildID         *snowflake.ID   `json:"guild_id,omitempty"`
	Author          wireUser        `json:"author"`
	Member          *wireMember     `json:"member,omitempty"`
	Content         string          `json:"content"`
	Timestamp       discordTime     `json:"timestamp"`
	EditedTimestamp *discordTime    `json:"edited_timestamp"`
	TTS             bool            `json:"tts"`
	MentionEveryone bool            `json:"mention_everyone"`
	Mentions        []any           `json:"mentions"`
	MentionRoles    []any           `json:"mention_roles"`
	Attachments     []any           `json:"attachments"`
	Embeds          json.RawMessage `json:"embeds"`
	Components      json.RawMessage `json:"components"`
	Pinned          bool            `json:"pinned"`
	WebhookID       *snowflake.ID   `json:"webhook_id,omitempty"`
	Flags           int             `json:"flags"`
	Nonce           json.RawMessage `json:"nonce,omitempty"`
	// MessageReference is set on replies (type 19).
	MessageReference *wireMessageReference `json:"message_reference,omitempty"`
}

// messageTypeReply is Discord's message type of a reply.
const messageTypeReply = 19

// wireMessageReference is a message's message_reference; type 0 is a reply
// (1 is a forward).
type wireMessageReference struct {
	Type      int           `json:"type"`
	MessageID *snowflake.ID `json:"message_id"`
	ChannelID *snowflake.ID `json:"channel_id,omitempty"`
	GuildID   *snowflake.ID `json:"guild_id,omitempty"`
}

type wireError struct {
	Message string `json:"message"`
	Code    int    `json:"code"`
}

func strPtr(s string) *string { return &s }
func intPtr(i int) *int       { return &i }

func (u *User) wire() wireUser {
	w := wireUser{ID: u.ID, Username: u.Username, Discriminator: "0", Bot: u.Bot}
	if u.GlobalName != "" {
		w.GlobalName = strPtr(u.GlobalName)
	}
	return w
}

func (r *Role) wire() wireRole {
	return wireRole{
		ID: r.ID, Name: r.Name, Color: r.Color, Hoist: r.Hoist, Position: r.Position,
		Permissions: strconv.FormatUint(r.Permissions, 10), Mentionable: r.Mentionable,
	}
}

// wire renders a channel; withGuild adds guild_id, which GUILD_CREATE leaves out and
// REST and CHANNEL_* events include.
func (c *Channel) wire(withGuild bool) wireChannel {
	w := wireChannel{
		ID: c.ID, Type: c.Type, Name: c.Name, Position: c.Position,
		PermissionOverwrites: []wireOverwrite{},
	}
	if withGuild {
		gid := c.GuildID
		w.GuildID = &gid
	}
	if c.ParentID != 0 {
		p := c.ParentID
		w.ParentID = &p
	}
	switch c.Type {
	case ChannelTypeCategory:
	case ChannelTypeVoice:
		w.Bitrate = intPtr(64000)
		w.UserLimit = intPtr(0)
		w.RateLimitPerUser = intPtr(0)
		w.VideoQualityMode = intPtr(1)
	default:
		if c.Topic != "" {
			w.Topic = strPtr(c.Topic)
		}
		w.RateLimitPerUser = intPtr(0)
	}
	return w
}

func (w *World) wireMember(m *Member, withGuild snowflake.ID) wireMember {
	wm := wireMember{Roles: m.Roles, JoinedAt: discordTime(m.JoinedAt)}
	if wm.Roles == nil {
		wm.Roles = []snowflake.ID{}
	}
	if m.Nick != "" {
		wm.Nick = strPtr(m.Nick)
	}
	if u, ok := w.User(m.UserID); ok {
		wu := u.wire()
		wm.User = &wu
	} else {
		wm.User = &wireUser{ID: m.UserID, Username: "user" + m.UserID.String(), Discriminator: "0"}
	}
	if withGuild != 0 {
		wm.GuildID = &withGuild
	}
	return wm
}

func (g *Guild) wireGuild() wireGuild {
	wg := wireGuild{
		ID: g.ID, Name: g.Name, OwnerID: g.OwnerID, AFKTimeout: 300,
		Emojis: []any{}, Stickers: []any{}, Features: []string{}, PreferredLocale: "en-US",
	}
	for i := range g.Roles {
		wg.Roles = append(wg.Roles, g.Roles[i].wire())
	}
	if wg.Roles == nil {
		wg.Roles = []wireRole{}
	}
	return wg
}

// maxFullGuildCreate is the member count above which Discord's GUILD_CREATE lists
// only the bot (and users in voice channels), even with GUILD_PRESENCES.
const maxFullGuildCreate = 75_000

// guildCreate is g as GUILD_CREATE describes it. allMembers lists every member;
// otherwise only the bot, as Discord does for a session without GUILD_PRESENCES
// or a guild of more than 75k members.
func (w *World) guildCreate(g *Guild, largeThreshold int, allMembers bool) wireGatewayGuild {
	gg := wireGatewayGuild{
		wireGuild: g.wireGuild(), JoinedAt: discordTime(g.JoinedAt), MemberCount: len(g.Members),
		VoiceStates: []any{}, Threads: []any{}, Presences: []any{}, StageInstances: []any{},
		GuildScheduledEvents: []any{}, SoundboardSounds: []any{},
		Members: make([]wireMember, 0, len(g.Members)), Channels: make([]wireChannel, 0, len(g.Channels)),
	}
	if largeThreshold <= 0 {
		largeThreshold = 50
	}
	gg.Large = len(g.Members) > largeThreshold
	allMembers = allMembers && len(g.Members) <= maxFullGuildCreate
	for i := range g.Members {
		if allMembers || g.Members[i].UserID == w.Bot.ID {
			gg.Members = append(gg.Members, w.wireMember(&g.Members[i], 0))
		}
	}
	for i := range g.Channels {
		gg.Channels = append(gg.Channels, g.Channels[i].wire(false))
	}
	return gg
}

// selfUser is the bot as READY and GET /users/@me describe it.
func (w *World) selfUser() wireSelfUser {
	return wireSelfUser{wireUser: w.Bot.wire(), Verified: true}
}

type wireApplication struct {
	ID                  snowflake.ID `json:"id"`
	Name                string       `json:"name"`
	Icon                *string      `json:"icon"`
	Description         string       `json:"description"`
	RPCOrigins          []string     `json:"rpc_origins"`
	BotPublic           bool         `json:"bot_public"`
	BotRequireCodeGrant bool         `json:"bot_require_code_grant"`
	Bot                 wireUser     `json:"bot"`
	Owner               wireUser     `json:"owner"`
	VerifyKey           string       `json:"verify_key"`
	Tags                []string     `json:"tags"`
	Flags               int          `json:"flags"`
	GuildCount          int          `json:"approximate_guild_count"`
	IntegrationTypes    struct{}     `json:"integration_types_config"`
}
