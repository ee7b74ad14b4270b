package redisipc

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// fieldMsg is the one stream field an encoded envelope travels in.
const fieldMsg = "m"

type outOp byte

const (
	outXAdd    outOp = iota // XADD key MAXLEN ~ maxLen * (data or values)
	outPublish              // PUBLISH key data
	outAckOnly              // only the ack below
)

// outMsg is one queued write. Acks ride along so a batch of replies and the
// XACK of the entries they answer go out in the same pipeline.
type outMsg struct {
	op     outOp
	key    string
	maxLen int64
	// noMkStream appends only to an existing stream (XADD NOMKSTREAM): to
	// inboxes and reply streams, which their nodes own.
	noMkStream bool
	data       []byte
	values     []any // instead of data, for dead letters
	ackKey     string
	ackID      string
	done       func(error) // told the result of the write, if set
}

// enqueue hands m to the writer. It blocks only while the queue is full.
func (n *Node) enqueue(ctx context.Context, m outMsg) error {
	select {
	case n.out <- m:
		return nil
	case <-n.writerDone:
		return ErrClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// writer is the process's single writer: it drains everything queued into
// one pipeline per round trip. With many calls in flight that turns N
// round trips into one, which is where the throughput comes from.
func (n *Node) writer() {
	defer close(n.writerDone)
	batch := make([]outMsg, 0, n.opts.WriteBatch)
	for {
		select {
		case m := <-n.out:
			batch = append(batch, m)
		case <-n.writerStop:
			// Close stops the writer only after handlers finished, so what is
			// queued now is all there will be.
			for {
				select {
				case m := <-n.out:
					batch = append(batch, m)
					if len(batch) == cap(batch) {
						n.flush(batch)
						batch = batch[:0]
					}
					continue
				default:
				}
				break
			}
			if len(batch) > 0 {
				n.flush(batch)
			}
			return
		}
	drain:
		for len(batch) < cap(batch) {
			select {
			case m := <-n.out:
				batch = append(batch, m)
			default:
				break drain
			}
		}
		n.flush(batch)
		clear(batch)
		batch = batch[:0]
	}
}

func (n *Node) flush(batch []outMsg) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pipe := n.rdb.Pipeline()
	cmds := make([]redis.Cmder, len(batch))
	var acks map[string][]string
	for i := range batch {
		m := &batch[i]
		switch m.op {
		case outXAdd:
			var vals any = m.values
			if m.values == nil {
				vals = []any{fieldMsg, m.data}
			}
			cmds[i] = pipe.XAdd(ctx, &redis.XAddArgs{Stream: m.key, MaxLen: m.maxLen, Approx: true,
				NoMkStream: m.noMkStream, Values: vals})
		case outPublish:
			cmds[i] = pipe.Publish(ctx, m.key, m.data)
		}
		if m.ackKey != "" {
			if acks == nil {
				acks = map[string][]string{}
			}
			acks[m.ackKey] = append(acks[m.ackKey], m.ackID)
		}
	}
	ackCmds := make([]*redis.IntCmd, 0, len(acks))
	for key, ids := range acks {
		ackCmds = append(ackCmds, pipe.XAck(ctx, key, n.ks.InboxGroup(), ids...))
	}
	if all, err := pipe.Exec(ctx); err != nil {
		// redis.Nil is a NOMKSTREAM append to a stream that is gone, which
		// the loop below reports to its sender; only other errors fail the
		// batch.
		for _, c := range all {
			if c.Err() != nil && !errors.Is(c.Err(), redis.Nil) {
				n.log.Warn("redisipc: write batch failed", "error", c.Err(), "writes", len(batch))
				break
			}
		}
	}
	for _, c := range ackCmds {
		if c.Err() == nil {
			// Acked entries no longer need their lease refreshed.
			for _, id := range c.Args()[3:] {
				if s, ok := id.(string); ok {
					n.inflight.remove(s)
				}
			}
		}
	}
	for i := range batch {
		if batch[i].done == nil {
			if cmds[i] != nil && errors.Is(cmds[i].Err(), redis.Nil) {
				n.log.Debug("redisipc: dropped a write to a stream that is gone (a late reply)", "stream", batch[i].key)
			}
			continue
		}
		var err error
		if cmds[i] != nil {
			err = cmds[i].Err()
		}
		if errors.Is(err, redis.Nil) {
			err = fmt.Errorf("%w: %s does not exist", ErrNoResponders, batch[i].key)
		}
		batch[i].done(err)
	}
}
