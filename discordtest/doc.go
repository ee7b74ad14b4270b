// Package discordtest is a faithful fake of Discord's gateway and REST API that
// unmodified disgo v0.19.6 clients (and other libraries) connect to, so that bots and
// the toolkit around them can be tested without Discord.
//
// One HTTP listener serves everything:
//
//   - REST under /api/v10 (GET /gateway/bot, /gateway, /users/@me, /users/{id},
//     /users/@me/guilds, /applications/@me, /oauth2/applications/@me, /guilds/{id},
//     /guilds/{id}/channels, /guilds/{id}/roles, /guilds/{id}/members,
//     /guilds/{id}/members/{user}, /channels/{id}; POST /channels/{id}/messages and
//     POST /webhooks/{id}/{token}), with Discord's error bodies and codes.
//   - The gateway WebSocket at / and the resume_gateway_url at /resume, with
//     zstd-stream (disgo's default), zlib-stream or no compression.
//   - Control and reports under /_fake/: stats, messages, message (a user posts a
//     message, see SendMessage), dispatch, control, config, world, ratelimit and
//     Prometheus metrics. cmd/fakediscord -h lists them with their parameters.
//
// The gateway follows Discord's state machine: HELLO, delayed heartbeat ACKs,
// IDENTIFY validated in Discord's order (4004, 4010, 4013, 4014, 4011), identify
// concurrency buckets (shard_id % max_concurrency) with violations recorded, READY
// with a resume URL, a GUILD_CREATE for each guild of the shard, RESUME with replay of
// missed dispatches, RECONNECT, INVALID_SESSION and Discord's close codes. Sessions
// outlive connections: a client that drops (or closes with any code but 1000/1001)
// can resume within Options.ResumeWindow, and events dispatched meanwhile are
// replayed.
//
// The world (guilds, channels, roles, members, users) is generated from a seed. Guild
// ids carry increasing timestamps, so ShardFor spreads them evenly over any shard
// count. Dispatch injects events into the shard that owns a guild and keeps the world
// in step, so REST answers stay consistent with what the gateway said. Flood
// pours a mix of MESSAGE_CREATE and GUILD_* updates into a shard as fast as its
// socket takes them, for throughput measurements (go run ./bench).
//
// # Intents
//
// Each session receives what the intents of its IDENTIFY cover, as on Discord
// (Options.IgnoreIntents turns this off). Events of an intent the session did
// not ask for are withheld (GUILD_MEMBER_* without GUILD_MEMBERS,
// PRESENCE_UPDATE without GUILD_PRESENCES, guild MESSAGE_* without
// GUILD_MESSAGES, DMs without DIRECT_MESSAGES, ...); Dispatch reports
// ErrWithheld when no session received an event. Without MESSAGE_CONTENT, guild
// MESSAGE_CREATE and MESSAGE_UPDATE arrive with empty content, embeds,
// attachments and components and without poll, except messages that mention the
// bot and the bot's own messages. Without GUILD_PRESENCES, GUILD_CREATE lists
// only the bot among its members (as for guilds over 75k members). A
// REQUEST_GUILD_MEMBERS for a whole member list without GUILD_MEMBERS gets no
// answer. The gating happens when an event is sequenced for a session, so a
// RESUME replays what that session was sent.
//
// Every payload is checked to decode with disgo's own types: a payload disgo cannot
// decode makes it drop the connection and lose the session, and a DM channel type in
// CHANNEL_CREATE crashes it.
//
// disgo v0.19.6 has data races in its gateway, so tests that use -race should run
// disgo bots in child processes (see internal/probebot) and talk to the Server from
// the test binary. The cmd/fakediscord command runs the Server on its own.
//
// Not implemented on purpose: ETF encoding, zlib-payload compression from the server
// (clients that ask for it get uncompressed frames, which disgo accepts), voice,
// interactions and application commands, presences and typing beyond passing through
// injected events, voice states (so GUILD_CREATE without GUILD_PRESENCES lists no
// users in voice channels), message history (GET messages), edits and deletes over REST, and
// the daily session-start reset.
package discordtest
