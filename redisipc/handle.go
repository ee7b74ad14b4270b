package redisipc

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/megane-go/megane/keyspace"
)

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
			n.queueOut(m)
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
			n.log.Warn("redisipc: handler failed", slog.String("op", e.Op), slog.String("from", e.From), slog.Any("error", err))
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

// queueOut queues m for the writer.
func (n *Node) queueOut(m outMsg) {
	if m.op == outAckOnly && m.ackKey == "" {
		return
	}
	if err := n.enqueue(n.base, m); err != nil {
		n.log.Warn("redisipc: reply not written", slog.Any("error", err))
	}
}
