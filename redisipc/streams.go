package redisipc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// A node owns two streams: its reply stream, and its inbox (shared with the
// other copies of a service). The node creates them before it advertises its
// address, keeps a TTL on them while it lives (heartbeat), and deletes on
// Close the ones no one else uses. Every other writer appends with XADD
// NOMKSTREAM: a request to a vanished inbox or a reply to a caller that left
// is refused by Redis instead of recreating the stream without a TTL. That
// is one command on one key, so it holds on Redis Cluster as it does on one
// server.

// streamTTL is how long a node's streams outlive its last heartbeat.
func (n *Node) streamTTL() time.Duration { return max(3*n.opts.HeartbeatTTL, time.Minute) }

// ephemeral reports whether the node's inbox belongs to this process alone
// (a CLI's "cli:<id>"), so Close deletes it rather than leaving it for a
// successor at the same address.
func (n *Node) ephemeral() bool { return n.kind == KindCLI }

// marker is the entry that creates a stream: a wake-up, which every reader
// skips.
func (n *Node) marker() []any {
	w := envelope{Kind: kindWake, To: n.addr, Instance: n.inst}
	return []any{fieldMsg, w.encode()}
}

// createReplies creates the reply stream with its TTL; fresh first drops
// whatever an earlier process of the same instance left in it.
func (n *Node) createReplies(ctx context.Context, fresh bool) error {
	cmds, err := n.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if fresh {
			p.Del(ctx, n.replyKey)
		}
		p.XAdd(ctx, &redis.XAddArgs{Stream: n.replyKey, MaxLen: n.opts.ReplyMaxLen, Approx: true, Values: n.marker()})
		p.PExpire(ctx, n.replyKey, n.streamTTL())
		return nil
	})
	if err := txErr(cmds, err); err != nil {
		return fmt.Errorf("redisipc: create reply stream: %w", err)
	}
	return nil
}

// createInbox makes sure the inbox exists with a TTL. A group inbox gets its
// consumer group (a copy that finds both already there joins them); a
// plain inbox gets a marker entry, whose id is returned: the reader starts
// after it, so nothing sent before the address was advertised is served.
func (n *Node) createInbox(ctx context.Context) (string, error) {
	var add *redis.StringCmd
	var grp *redis.StatusCmd
	cmds, err := n.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		if n.opts.Group {
			grp = p.XGroupCreateMkStream(ctx, n.inboxKey, n.ks.InboxGroup(), "$")
		} else {
			add = p.XAdd(ctx, &redis.XAddArgs{Stream: n.inboxKey, MaxLen: n.opts.InboxMaxLen, Approx: true, Values: n.marker()})
		}
		p.PExpire(ctx, n.inboxKey, n.streamTTL())
		return nil
	})
	err = txErr(cmds, err)
	if grp != nil && isBusyGroup(grp.Err()) {
		err = nil
	}
	if err != nil {
		return "", fmt.Errorf("redisipc: create inbox %s: %w", n.inboxKey, err)
	}
	if add != nil {
		return add.Val(), nil
	}
	return "", nil
}

func isBusyGroup(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "BUSYGROUP") }

// streamRefresh is the heartbeat's part in keeping the streams alive.
type streamRefresh struct {
	inbox, replies *redis.BoolCmd
}

// queueRefresh pushes back the streams' TTLs in the heartbeat's pipeline.
func (n *Node) queueRefresh(ctx context.Context, p redis.Pipeliner) streamRefresh {
	ttl := n.streamTTL()
	return streamRefresh{inbox: p.PExpire(ctx, n.inboxKey, ttl), replies: p.PExpire(ctx, n.replyKey, ttl)}
}

// recreate rebuilds the streams the refresh found missing (a flushed or
// restarted Redis, or a heartbeat stalled past the TTL): the node heals by
// itself, and until then senders get ErrNoResponders instead of writing
// streams nobody would ever delete.
func (n *Node) recreate(ctx context.Context, r streamRefresh) error {
	var errs []error
	if r.replies.Err() == nil && !r.replies.Val() {
		n.log.Warn("redisipc: reply stream was gone; recreating it")
		errs = append(errs, n.createReplies(ctx, false))
	}
	if r.inbox.Err() == nil && !r.inbox.Val() && !n.closed.Load() {
		n.log.Warn("redisipc: inbox was gone; recreating it")
		_, err := n.createInbox(ctx)
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// txErr is the error of a MULTI/EXEC pipeline whose commands are cmds and
// whose error is err. When Redis refused a command while queueing it (OOM
// under noeviction, say), EXEC fails with EXECABORT, which says nothing of
// why; txErr returns the refusal itself, so that the caller (and
// redisconn.IsOutage) sees an outage rather than a bad command.
func txErr(cmds []redis.Cmder, err error) error {
	if err == nil || !redis.HasErrorPrefix(err, "EXECABORT") {
		return err
	}
	for _, c := range cmds {
		if cerr := c.Err(); cerr != nil && !redis.HasErrorPrefix(cerr, "EXECABORT") {
			return fmt.Errorf("%w (transaction aborted)", cerr)
		}
	}
	return err
}
