package redisipc

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
)

// entryBytes returns the envelope bytes of a stream entry.
func entryBytes(m redis.XMessage) []byte {
	switch v := m.Values[fieldMsg].(type) {
	case string:
		return []byte(v)
	case []byte:
		return v
	}
	return nil
}

// pause waits d or until the node closes; it reports whether to go on.
func (n *Node) pause(stop <-chan struct{}, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-stop:
		return false
	}
}

// replyReader is the process's one reader of its reply stream: every call's
// answer arrives here and is routed by id, so a thousand waiting calls cost
// one blocked connection, not a thousand.
func (n *Node) replyReader() {
	defer n.loopsWG.Done()
	defer close(n.replyDone)
	last := "0-0"
	for {
		res, err := n.rdb.XRead(n.base, &redis.XReadArgs{
			Streams: []string{n.replyKey, last}, Count: n.opts.ReadCount, Block: n.opts.BlockTimeout,
		}).Result()
		if err != nil {
			if errors.Is(err, redis.Nil) {
				if n.isClosing() {
					return
				}
				continue
			}
			if n.isClosing() {
				return
			}
			n.log.Warn("redisipc: read replies", "err", err)
			if !n.pause(n.closing, 100*time.Millisecond) {
				return
			}
			continue
		}
		for _, s := range res {
			for _, m := range s.Messages {
				last = m.ID
				e, err := decodeEnvelope(entryBytes(m))
				if err != nil {
					n.deadLetterNow(n.replyKey, m.ID, entryBytes(m), err.Error())
					continue
				}
				switch e.Kind {
				case kindReply:
					n.pending.deliver(e)
				case kindWake:
					if n.isClosing() {
						return
					}
				default:
					n.deadLetterNow(n.replyKey, m.ID, entryBytes(m), fmt.Sprintf("kind %d on a reply stream", e.Kind))
				}
			}
		}
	}
}

func (n *Node) isClosing() bool {
	select {
	case <-n.closing:
		return true
	default:
		return false
	}
}

func (n *Node) inboxStopped() bool {
	select {
	case <-n.inboxStop:
		return true
	default:
		return false
	}
}

// inboxReader reads the inbox in batches and serves each batch itself
// (serveInline), until a slow handler makes it hand reading on.
func (n *Node) inboxReader(last string) {
	defer n.inboxWG.Done()
	group := n.ks.InboxGroup()
	for !n.inboxStopped() {
		var res []redis.XStream
		var err error
		if n.opts.Group {
			res, err = n.rdb.XReadGroup(n.base, &redis.XReadGroupArgs{
				Group: group, Consumer: n.inst, Streams: []string{n.inboxKey, ">"},
				Count: n.opts.ReadCount, Block: n.opts.BlockTimeout,
			}).Result()
		} else {
			res, err = n.rdb.XRead(n.base, &redis.XReadArgs{
				Streams: []string{n.inboxKey, last}, Count: n.opts.ReadCount, Block: n.opts.BlockTimeout,
			}).Result()
		}
		if err != nil {
			if errors.Is(err, redis.Nil) || n.inboxStopped() {
				continue
			}
			if n.opts.Group && strings.HasPrefix(err.Error(), "NOGROUP") {
				// The inbox was deleted (FLUSHDB, expiry by hand): recreate.
				if _, gerr := n.createInbox(n.base); gerr == nil {
					continue
				}
			}
			n.log.Warn("redisipc: read inbox", "err", err)
			n.pause(n.inboxStop, 100*time.Millisecond)
			continue
		}
		now := time.Now()
		for _, s := range res {
			if len(s.Messages) == 0 {
				continue
			}
			last = s.Messages[len(s.Messages)-1].ID
			if n.opts.Group {
				for _, m := range s.Messages {
					n.inflight.add(m.ID, now)
				}
			}
			if n.serveInline(n.inboxKey, s.Messages, last) {
				return // a fresh reader took over while a handler was slow
			}
		}
	}
}

// Inline batch states: the reader is still serving, a slow handler made it
// hand reading on, or it finished first.
const (
	batchServing = iota
	batchHandedOff
	batchDone
)

// serveInline answers a batch on the reader goroutine itself: no goroutine
// per entry, and every reply plus the acks in one pipeline, which is what
// makes a busy inbox fast. A handler may still be slow: once the batch has
// taken BatchLinger, a timer hands reading on to a fresh reader goroutine
// (starting after last), sends the replies collected so far through the
// writer, and the entries not yet started run in goroutines of their own.
// So a slow handler never stops the inbox and holds back no reply but its
// own. It reports whether reading was handed on, in which case the caller
// must stop reading.
func (n *Node) serveInline(stream string, msgs []redis.XMessage, last string) bool {
	var mu sync.Mutex
	state := batchServing
	next := 0 // the first entry not yet started
	out := make([]outMsg, 0, len(msgs))
	timer := time.AfterFunc(n.opts.BatchLinger, func() {
		mu.Lock()
		if state != batchServing {
			mu.Unlock()
			return
		}
		state = batchHandedOff
		rest := msgs[next:]
		next = len(msgs)
		done := out
		out = nil
		mu.Unlock()
		if !n.inboxStopped() {
			n.inboxWG.Add(1)
			go n.inboxReader(last)
		}
		for _, m := range done {
			n.finish(m)
		}
		n.serveInGoroutines(stream, rest)
	})
	defer timer.Stop()
	for {
		mu.Lock()
		if state != batchServing || next >= len(msgs) {
			mu.Unlock()
			break
		}
		m := msgs[next]
		next++
		mu.Unlock()

		n.sem <- struct{}{}
		n.handlerWG.Add(1)
		reply, ok := n.process(stream, m.ID, entryBytes(m))
		<-n.sem
		n.handlerWG.Done()
		if !ok {
			continue
		}
		mu.Lock()
		if state == batchHandedOff {
			mu.Unlock()
			n.finish(reply)
			continue
		}
		out = append(out, reply)
		mu.Unlock()
	}
	mu.Lock()
	handedOff := state == batchHandedOff
	state = batchDone
	rest := out
	out = nil
	mu.Unlock()
	if len(rest) > 0 {
		n.flush(rest)
	}
	return handedOff
}

// serveInGoroutines answers entries each in a goroutine of its own; their
// replies go through the writer.
func (n *Node) serveInGoroutines(stream string, msgs []redis.XMessage) {
	for _, m := range msgs {
		n.sem <- struct{}{}
		n.handlerWG.Add(1)
		go func() {
			defer func() {
				<-n.sem
				n.handlerWG.Done()
			}()
			if reply, ok := n.process(stream, m.ID, entryBytes(m)); ok {
				n.finish(reply)
			}
		}()
	}
}

// reclaimLoop keeps this copy's leases on entries it is still handling, and
// takes over entries whose reader went silent for ClaimIdle: a copy that
// died with requests pending loses them to a live copy.
func (n *Node) reclaimLoop() {
	defer n.inboxWG.Done()
	every := n.opts.ClaimIdle / 3
	t := time.NewTicker(every)
	defer t.Stop()
	group := n.ks.InboxGroup()
	for {
		select {
		case <-n.inboxStop:
			return
		case <-t.C:
		}
		if ids := n.inflight.stale(time.Now(), every); len(ids) > 0 {
			// Re-claiming to ourselves resets the idle time, so slow handlers
			// are not mistaken for dead ones.
			err := n.rdb.XClaimJustID(n.base, &redis.XClaimArgs{
				Stream: n.inboxKey, Group: group, Consumer: n.inst, MinIdle: 0, Messages: ids,
			}).Err()
			if err != nil && !errors.Is(err, redis.Nil) {
				n.log.Warn("redisipc: refresh leases", "err", err)
			}
		}
		start := "0-0"
		for range 16 {
			msgs, next, err := n.rdb.XAutoClaim(n.base, &redis.XAutoClaimArgs{
				Stream: n.inboxKey, Group: group, Consumer: n.inst, MinIdle: n.opts.ClaimIdle,
				Start: start, Count: n.opts.ReadCount,
			}).Result()
			if err != nil {
				if !errors.Is(err, redis.Nil) && !n.inboxStopped() {
					n.log.Warn("redisipc: reclaim", "err", err)
				}
				break
			}
			if len(msgs) > 0 {
				n.log.Info("redisipc: reclaimed entries of a silent copy", slog.Int("entries", len(msgs)))
			}
			now := time.Now()
			for _, m := range msgs {
				n.inflight.add(m.ID, now)
				n.dispatch(n.inboxKey, m.ID, entryBytes(m))
			}
			if next == "0-0" || next == "" || n.inboxStopped() {
				break
			}
			start = next
		}
	}
}

// broadcastLoop answers pub/sub broadcasts aimed at this node.
func (n *Node) broadcastLoop() {
	defer n.loopsWG.Done()
	for msg := range n.pubsub.Channel() {
		if !n.serving.Load() || n.inboxStopped() {
			continue
		}
		n.dispatch("", "", []byte(msg.Payload))
	}
}

// dispatch runs one message in a handler goroutine, waiting for a free
// slot first so a flooded node stops reading instead of growing without
// bound. stream and entry are empty for broadcasts.
func (n *Node) dispatch(stream, entry string, raw []byte) {
	n.sem <- struct{}{}
	n.handlerWG.Add(1)
	go func() {
		defer func() {
			<-n.sem
			n.handlerWG.Done()
		}()
		if m, ok := n.process(stream, entry, raw); ok {
			n.finish(m)
		}
	}()
}

// process handles one message and returns the write that answers it: the
// reply (with the ack of its entry), a dead letter, or a bare ack. Whatever
// arrives, the process survives and its neighbours' messages are untouched:
// undecodable messages go to the dead-letter stream, bad requests get an
// error reply.
func (n *Node) process(stream, entry string, raw []byte) (outMsg, bool) {
	ack := outMsg{op: outAckOnly}
	if n.opts.Group && stream == n.inboxKey {
		ack.ackKey, ack.ackID = stream, entry
	}
	e, err := decodeEnvelope(raw)
	if err != nil {
		return n.deadLetter(ack, stream, entry, raw, err.Error())
	}
	if stream == "" {
		if e.Kind != kindBroadcast || !matchTarget(e.To, n.addr) {
			return ack, false
		}
	} else if e.Kind == kindWake {
		return ack, true
	} else if e.Kind != kindRequest && e.Kind != kindSend {
		return n.deadLetter(ack, stream, entry, raw, fmt.Sprintf("kind %d in an inbox", e.Kind))
	}
	wantsReply := e.Kind != kindSend
	if wantsReply && e.ReplyTo == "" {
		return n.deadLetter(ack, stream, entry, raw, "request without reply-to")
	}
	if wantsReply {
		// The reply-to becomes a key: a name the keyspace refuses never does.
		if err := keyspace.CheckName(e.ReplyTo); err != nil {
			return n.deadLetter(ack, stream, entry, raw, "bad reply-to: "+err.Error())
		}
	}
	dl := e.deadline()
	if !dl.IsZero() && !time.Now().Before(dl) {
		// The caller has given up: running it would only waste work.
		n.dropped.Add(1)
		return ack, true
	}
	fail := func(code, msg string) (outMsg, bool) {
		if !wantsReply {
			return n.deadLetter(ack, stream, entry, raw, code+": "+msg)
		}
		return n.reply(ack, e, nil, code, msg)
	}
	if len(e.Payload) > n.opts.MaxPayload {
		return fail(codeTooLarge, fmt.Sprintf("payload of %d bytes exceeds the limit of %d", len(e.Payload), n.opts.MaxPayload))
	}
	h := n.handler(e.Op)
	if h == nil {
		return fail(codeUnknown, fmt.Sprintf("unknown op %q", e.Op))
	}
	ctx := n.base
	if !dl.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, dl)
		defer cancel()
	}
	req := &Request{ID: e.ID, Op: e.Op, From: e.From, ReplyTo: e.ReplyTo, Deadline: dl,
		Payload: e.Payload, To: e.To, Instance: e.Instance}
	out, err := n.run(ctx, h, req)
	n.handled.Add(1)
	if err != nil {
		n.failed.Add(1)
		code := codeHandler
		var pe panicError
		switch {
		case errors.As(err, &pe):
			code = codePanic
		case errors.Is(err, ErrUnknownOp):
			code = codeUnknown
		case errors.Is(err, ErrEvalLimit):
			code = codeLimit
		case errors.Is(err, ErrEval):
			code = codeEval
		case errors.Is(err, ErrPayloadTooLarge):
			code = codeTooLarge
		}
		if !wantsReply {
			n.log.Warn("redisipc: handler failed", "op", e.Op, "from", e.From, "err", err)
			return ack, true
		}
		return n.reply(ack, e, nil, code, err.Error())
	}
	if !wantsReply {
		return ack, true
	}
	if len(out) > n.opts.MaxPayload {
		return n.reply(ack, e, nil, codeTooLarge, fmt.Sprintf("reply of %d bytes exceeds the limit of %d", len(out), n.opts.MaxPayload))
	}
	return n.reply(ack, e, out, "", "")
}

type panicError struct{ v any }

func (p panicError) Error() string { return fmt.Sprintf("handler panicked: %v", p.v) }

func (n *Node) run(ctx context.Context, h Handler, req *Request) (out []byte, err error) {
	defer func() {
		if v := recover(); v != nil {
			n.log.Error("redisipc: handler panicked", "op", req.Op, "panic", v)
			err = panicError{v}
		}
	}()
	return h(ctx, req)
}

// reply builds the answer to e, carrying the ack of its entry.
func (n *Node) reply(ack outMsg, e *envelope, payload []byte, code, msg string) (outMsg, bool) {
	r := envelope{Kind: kindReply, ID: e.ID, Op: e.Op, From: n.addr, Instance: n.inst, To: e.From, Payload: payload}
	if code != "" {
		r.Status, r.Code, r.Payload = statusError, code, []byte(msg)
	}
	// NOMKSTREAM: a caller that left took its reply stream with it, and a
	// late reply must not bring it back without a TTL.
	ack.op, ack.key, ack.maxLen, ack.data = outXAdd, n.ks.Replies(e.ReplyTo), n.opts.ReplyMaxLen, r.encode()
	ack.noMkStream = true
	return ack, true
}

// finish queues m for the writer.
func (n *Node) finish(m outMsg) {
	if m.op == outAckOnly && m.ackKey == "" {
		return
	}
	if err := n.enqueue(n.base, m); err != nil {
		n.log.Warn("redisipc: reply not written", "err", err)
	}
}

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
		n.log.Warn("redisipc: claim a bad broadcast's dead letter", "err", err)
		return true
	}
	return ok
}

func (n *Node) deadLetterNow(stream, entry string, raw []byte, reason string) {
	m, _ := n.deadLetter(outMsg{op: outAckOnly}, stream, entry, raw, reason)
	n.finish(m)
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
