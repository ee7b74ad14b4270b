package redisipc

import (
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/redis/go-redis/v9"
)

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
			n.log.Warn("redisipc: read replies", slog.Any("error", err))
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
