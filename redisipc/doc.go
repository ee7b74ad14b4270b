// Package redisipc is Megane's inter-process communication over one shared
// Redis: requests and replies on streams, broadcasts on pub/sub, and a
// registry of live nodes.
//
// # Nodes and addresses
//
// Every process is a Node with an address — "launcher", "cluster:<id>",
// "service:<name>" or "cli:<id>" — and a unique instance id. A node
// registers itself with a heartbeat TTL; LiveNodes lists the registry (it is
// what megane-cli shows).
//
// # Requests
//
// Call appends the request to the target's inbox stream and waits for the
// answer on the caller's own reply stream, matched by id. Each process has
// one writer goroutine that sends everything queued in one pipeline, and one
// reader of its reply stream, however many calls are waiting. Every call
// has a deadline; a call to an address with no live node fails at once with
// ErrNoResponders, and one whose answer does not come in time with
// ErrTimeout. Send is fire-and-forget. Requests read after their deadline
// are dropped unexecuted.
//
// A node created with Options.Group reads its inbox through a consumer
// group, so several copies of one service share the requests. A copy keeps
// a lease on the requests it is handling; requests of a copy that died
// unacknowledged are reclaimed with XAUTOCLAIM by a live copy after
// Options.ClaimIdle. Delivery is at least once: a request a copy finished
// just before dying may run again on another copy.
//
// A message that cannot be decoded, or a fire-and-forget request with an
// unknown op, goes to the dead-letter stream with the reason and at most
// DeadLetterRawMax bytes of the message; a bad broadcast is recorded once,
// by the first node that claims it. A request with an unknown op or an
// oversized payload is answered with an error. The node carries on either
// way.
//
// # Broadcast, gather and eval
//
// Gather publishes a request on the namespace's broadcast channel to a
// target — TargetClusters, TargetServices, TargetAll or one address — and
// collects the answers, which come back on the reply stream like any other.
// It waits until every live matching instance answered or the deadline
// passed, and lists the silent ones (and clusters named by the shard map
// that have no live node) in Gathered.Missing.
//
// Eval is Gather of an expression (expr-lang/expr) evaluated against each
// target's EvalEnv. Expressions read values and call functions the process
// registered; they cannot change anything else. Nor can they hurt the
// process: each evaluation runs under the node's Options.Eval (EvalLimits:
// a deadline that really stops it, a byte budget charged before
// allocating, a size limit, a cap on evaluations at once, or eval
// disabled), and one refused or stopped answers with an error matching
// ErrEvalLimit.
//
// Every node answers OpPing, OpInfo, OpStats and OpEval by itself. The
// answers to OpPing and OpStats are typed and versioned (PingReply,
// StatsReply; Node.Ping and Node.StatsOf ask for them); a process adds its
// own figures to its StatsReply with Node.SetStats.
//
// # Cluster commands
//
// A cluster command is an op named "cmd:<name>" that every cluster
// registers with HandleCommand. Run it on one cluster with Command, on the
// cluster that owns a guild with CommandGuild (routed with the shard map,
// shard = (guild_id >> 22) % shard_count, no broadcast), or on every cluster
// with CommandAll, which gathers the answers:
//
//	node.HandleCommand("guildName", func(ctx context.Context, r *redisipc.Request) ([]byte, error) {
//		var id uint64
//		if err := r.Decode(&id); err != nil {
//			return nil, err
//		}
//		return json.Marshal(lookUpName(id))
//	})
//	name, err := node.CommandGuild(ctx, guildID, "guildName", payload)
//
// # Keys
//
// Every key comes from package keyspace; the nodes registry, the inbox and
// reply streams, the dead-letter stream and the broadcast channel, with their
// types, fields and lifetimes, are described once, in the "Redis key schema"
// table of the repository's README.md.
//
// A node creates its inbox and reply stream before it advertises its
// address, and its heartbeat keeps their TTL (3 × HeartbeatTTL, at least a
// minute) and recreates them if Redis lost them. Close deletes the reply
// stream and a CLI node's inbox. Requests and replies are appended with
// XADD NOMKSTREAM, so a late reply to a caller that left, or a request to
// an inbox that expired, never creates a stream without an owner. Addresses,
// instances and a request's reply-to pass keyspace.CheckName before they
// become part of a key; a request whose reply-to does not is a dead letter.
//
// # Envelope
//
// A stream entry has one field, "m", holding the envelope: a version byte,
// kind, status, the deadline, then id, op, from, instance, to, reply-to,
// error code and payload as length-prefixed bytes. The decoder refuses
// unknown versions, kinds and any malformed length, and never panics (it is
// fuzzed).
package redisipc
