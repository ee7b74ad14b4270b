// Package cache keeps a projection of the bot's guilds, channels, roles,
// members and users in Redis, readable by every process (clusters, services,
// the CLI, redis-cli), and fetches what the projection cannot answer from the
// cluster that owns the guild.
//
// Writing: each cluster creates one Projector and hands it every raw gateway
// dispatch (disgo's raw events) with Enqueue, which copies nothing and never
// blocks. A decoder reads only the fields the configuration keeps, straight
// from the JSON bytes, and a writer sends them in pipelined batches, off the
// gateway's event path. Every write is idempotent: a RESUME that replays
// events already handled leaves the projection as it was. A shard's READY
// (a new session) replaces what the shard owned; a guild deleted, or left,
// goes with everything hanging off it; a guild in an outage is marked
// unavailable and kept.
//
// Reading: Reader has typed getters (ErrNotFound when absent), relation
// listings and counts per shard, per cluster and in total. Fetcher adds the
// cross-cluster fallback: it asks the owning cluster over IPC (FetchOp,
// served by OwnerHandler) only when the projection cannot answer, and never
// broadcasts.
//
// The keys, their types and fields are described once, in the "Redis key
// schema" table of the repository's README.md; package keyspace builds them.
package cache
