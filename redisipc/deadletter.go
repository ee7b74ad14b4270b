package redisipc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"time"
)

// deadLetter builds the record of a message that cannot be handled, with
// the reason, carrying its ack so it is not redelivered forever. A bad
// broadcast reaches every node; only the first to claim it records it.
func (n *Node) deadLetter(ack outMsg, stream, entry string, raw []byte, reason string) (outMsg, bool) {
	n.deadLetters.Add(1)
	if stream == "" && !n.claimBroadcastDeadLetter(raw) {
		return ack, false
	}
	n.log.Warn("redisipc: dead letter", "stream", stream, "entry", entry, "bytes", len(raw), "reason", clip(reason, deadLetterReasonMax))
	ack.op, ack.key, ack.maxLen = outXAdd, n.ks.DeadLetter(), n.opts.DeadLetterMaxLen
	ack.values = deadLetterValues(n.inst, stream, entry, raw, reason)
	return ack, true
}

// deadLetterDedupe is how long a bad broadcast's claim lives: far longer
// than pub/sub takes to reach every subscriber.
const deadLetterDedupe = time.Minute

// claimBroadcastDeadLetter reports whether this node is the one to record
// the bad broadcast raw: SET NX on the broadcast's digest, so however many
// nodes received it, one dead letter is written. An identical bad broadcast
// within deadLetterDedupe is not recorded again. When Redis cannot be asked
// the node records it: a duplicate beats a loss.
func (n *Node) claimBroadcastDeadLetter(raw []byte) bool {
	sum := sha256.Sum256(raw)
	ctx, cancel := context.WithTimeout(n.base, 5*time.Second)
	defer cancel()
	ok, err := n.rdb.SetNX(ctx, n.ks.DeadLetterSeen(hex.EncodeToString(sum[:16])), n.inst, deadLetterDedupe).Result()
	if err != nil {
		n.log.Warn("redisipc: claim a bad broadcast's dead letter", slog.Any("error", err))
		return true
	}
	return ok
}

func (n *Node) deadLetterNow(stream, entry string, raw []byte, reason string) {
	m, _ := n.deadLetter(outMsg{op: outAckOnly}, stream, entry, raw, reason)
	n.queueOut(m)
}

// DeadLetterRawMax bounds what a dead letter keeps of the message: its first
// DeadLetterRawMax bytes in the field "raw", and its full length in
// "raw_len". So a flood of huge bad messages costs at most
// Options.DeadLetterMaxLen entries of about this size.
const DeadLetterRawMax = 1024

// deadLetterReasonMax bounds a dead letter's reason, which may quote
// remote text (an op name, a reply-to).
const deadLetterReasonMax = 512

func deadLetterValues(inst, stream, entry string, raw []byte, reason string) []any {
	if stream == "" {
		stream = "broadcast"
	}
	return []any{"reason", clip(reason, deadLetterReasonMax), "stream", stream, "entry", entry, "node", inst,
		"raw", raw[:min(len(raw), DeadLetterRawMax)], "raw_len", len(raw), "at", time.Now().UnixMilli()}
}

// clip cuts s to at most max bytes, marking the cut.
func clip(s string, max int) string {
	if len(s) <= max {
		return s
	}
	return s[:max] + "…"
}
