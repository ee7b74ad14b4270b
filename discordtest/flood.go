package discordtest

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"time"
)

// FloodOptions shapes a [Server.Flood].
type FloodOptions struct {
	// MessageShare is the share of MESSAGE_CREATE in the mix, from 0 to 1;
	// the rest is spread evenly over GUILD_UPDATE, GUILD_MEMBER_UPDATE and
	// GUILD_ROLE_UPDATE. Default 0.7.
	MessageShare float64
	// Window is how many frames may wait in the connection's send queue:
	// the flood tops the queue up to it whenever the writer took frames, so
	// the rate is the one the client's socket takes. Default 256.
	Window int
	// Limit, when positive, ends the flood after this many events.
	Limit int64
}

// Flood is a running [Server.Flood].
type Flood struct {
	sent   atomic.Int64
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// ErrFloodNoEvents means the shard owns no guild with a text channel and a
// human member, so there is nothing to flood it with.
var ErrFloodNoEvents = errors.New("discordtest: nothing to flood the shard with")

// Flood dispatches a mix of MESSAGE_CREATE and GUILD_* updates (of the
// guilds the shard owns, taken from the world) to the newest live session of
// shard, as fast as its connection takes them, until Stop. Events are
// sequenced and buffered for RESUME like any dispatch, but they do not
// change the world, are not validated, and are recorded only in the
// counters. The mix is what the session's intents let through (nothing
// to flood with is ErrFloodNoEvents). While the shard has no connection the
// flood waits for one.
func (s *Server) Flood(shard int, o FloodOptions) (*Flood, error) {
	if o.MessageShare <= 0 || o.MessageShare > 1 {
		o.MessageShare = 0.7
	}
	if o.Window <= 0 {
		o.Window = 256
	}
	mix, err := s.floodMix(shard, o.MessageShare)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &Flood{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(f.done)
		f.err = s.flood(ctx, shard, o.Window, o.Limit, mix, &f.sent)
	}()
	return f, nil
}

// Sent is the number of events dispatched so far.
func (f *Flood) Sent() int64 { return f.sent.Load() }

// Done is closed when the flood ended: after Stop, after Limit events, or
// when the server closed.
func (f *Flood) Done() <-chan struct{} { return f.done }

// Stop ends the flood and returns the number of events dispatched. The
// error is ErrClosed when the server closed first.
func (f *Flood) Stop() (int64, error) {
	f.cancel()
	<-f.done
	return f.sent.Load(), f.err
}

type floodEvent struct {
	t string
	d []byte
}

// floodMix renders the events of a flood of shard: per 20 events, a share
// of MESSAGE_CREATE and the rest GUILD_* updates, cycling over the shard's
// guilds.
func (s *Server) floodMix(shard int, messageShare float64) ([]floodEvent, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := s.newestSessionLocked(shard, true)
	count := s.opts.Shards
	if sess != nil {
		count = sess.count
	}
	var msgs, guilds []floodEvent
	for _, g := range s.world.GuildsOfShard(shard, count) {
		m, err := s.userMessageLocked(UserMessage{GuildID: g.ID, Content: "flood"})
		if err != nil {
			continue
		}
		b, err := json.Marshal(m)
		if err != nil {
			return nil, fmt.Errorf("discordtest: flood: %w", err)
		}
		msgs = append(msgs, floodEvent{"MESSAGE_CREATE", b})
		add := func(t string, v any) error {
			b, err := json.Marshal(v)
			if err != nil {
				return fmt.Errorf("discordtest: flood: %w", err)
			}
			guilds = append(guilds, floodEvent{t, b})
			return nil
		}
		if err := add("GUILD_UPDATE", g.wireGuild()); err != nil {
			return nil, err
		}
		for i := range g.Members {
			if g.Members[i].UserID != s.opts.AppID {
				if err := add("GUILD_MEMBER_UPDATE", s.world.wireMember(&g.Members[i], g.ID)); err != nil {
					return nil, err
				}
				break
			}
		}
		if len(g.Roles) > 0 {
			if err := add("GUILD_ROLE_UPDATE", map[string]any{"guild_id": g.ID, "role": g.Roles[len(g.Roles)-1].wire()}); err != nil {
				return nil, err
			}
		}
	}
	if sess != nil {
		// What the session's intents withhold or blank, as Dispatch does.
		msgs, guilds = s.floodFilterLocked(sess, msgs), s.floodFilterLocked(sess, guilds)
	}
	if len(msgs) == 0 || len(guilds) == 0 {
		return nil, fmt.Errorf("%w: shard %d", ErrFloodNoEvents, shard)
	}
	const per = 20
	nMsg := int(messageShare*per + 0.5)
	var mix []floodEvent
	for i, mi, gi := 0, 0, 0; i < per*max(len(msgs), len(guilds)/3+1); i++ {
		if i%per < nMsg {
			mix = append(mix, msgs[mi%len(msgs)])
			mi++
		} else {
			mix = append(mix, guilds[gi%len(guilds)])
			gi++
		}
	}
	return mix, nil
}

func (s *Server) floodFilterLocked(sess *session, evs []floodEvent) []floodEvent {
	var out []floodEvent
	for _, e := range evs {
		if d, ok := s.filterIntents(sess, e.t, e.d); ok {
			out = append(out, floodEvent{e.t, d})
		}
	}
	return out
}

// flood tops up the shard's send queue to window frames whenever its writer
// took some, until ctx ends.
func (s *Server) flood(ctx context.Context, shard, window int, limit int64, mix []floodEvent, sent *atomic.Int64) error {
	tick := time.NewTicker(10 * time.Millisecond)
	defer tick.Stop()
	next := 0
	for {
		var wait <-chan struct{}
		s.mu.Lock()
		if s.isClosed() {
			s.mu.Unlock()
			return ErrClosed
		}
		sess := s.newestSessionLocked(shard, true)
		if sess != nil && sess.conn != nil {
			c := sess.conn
			c.mu.Lock()
			room := window - len(c.queue)
			c.mu.Unlock()
			if limit > 0 {
				room = int(min(int64(room), limit-sent.Load()))
			}
			for range room {
				e := mix[next]
				next = (next + 1) % len(mix)
				s.deliverLocked(sess, e.t, e.d)
			}
			if room > 0 {
				sent.Add(int64(room))
			}
			wait = c.written
		}
		s.mu.Unlock()
		if limit > 0 && sent.Load() >= limit {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case <-wait:
		case <-tick.C:
		}
	}
}
