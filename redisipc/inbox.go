package redisipc

import (
	"errors"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
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
			n.log.Warn("redisipc: read inbox", slog.Any("error", err))
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
			n.queueOut(m)
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
			n.queueOut(reply)
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
				n.queueOut(reply)
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
				n.log.Warn("redisipc: refresh leases", slog.Any("error", err))
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
					n.log.Warn("redisipc: reclaim", slog.Any("error", err))
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
