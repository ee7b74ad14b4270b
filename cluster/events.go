package cluster

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime/debug"
	"time"

	"github.com/disgoorg/disgo/gateway"
	"github.com/disgoorg/snowflake/v2"

	"github.com/megane-go/megane/clusterhash"
	"github.com/megane-go/megane/lifecycle"
)

func (r *runner) onReady(ctx context.Context) {
	now := time.Now()
	r.readyAt.Store(now.UnixMilli())
	if err := clusterhash.SetReady(ctx, r.rdb, r.ks, r.o.ID, now).Err(); err != nil {
		r.log.Warn("cluster: could not record readiness", slog.Any("error", err))
	}
	// Written before OnReady tells the launcher, so the events stream stays
	// in causal order: this ready comes before whatever the launcher does
	// next (the next cluster's exit in a rolling restart).
	// The shard events queued so far go first, in the same pipeline.
	evs := r.track.takeEvents()
	pipe := r.rdb.Pipeline()
	for _, ev := range evs {
		lifecycle.PublishPipe(ctx, pipe, r.ks, ev)
	}
	ready := lifecycle.ClusterEvent(lifecycle.ClusterReady, r.o.ID, "")
	lifecycle.PublishPipe(ctx, pipe, r.ks, ready)
	if _, err := pipe.Exec(ctx); err != nil {
		r.track.requeue(append(evs, ready))
		r.log.Warn("cluster: could not publish readiness", slog.Any("error", err))
	}
	r.log.Info("cluster ready", slog.Int("shards", len(r.ids)))
	if r.sh != nil && r.sh.rep != nil {
		// Publish at once rather than at the next interval, so statistics
		// read right after "ready" already show the shards up.
		go func() {
			defer r.recoverCallback("stats")
			if err := r.sh.rep.Publish(context.WithoutCancel(ctx)); err != nil {
				r.log.Warn("cluster: could not publish statistics", slog.Any("error", err))
			}
		}()
	}
	if f := r.o.OnReady; f != nil {
		go func() {
			defer r.recoverCallback("OnReady")
			f()
		}()
	}
}

func (r *runner) recoverCallback(name string) {
	if p := recover(); p != nil {
		r.log.Error("cluster: callback panicked", slog.String("callback", name),
			slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
	}
}

// onShardGaveUp is disgo's close handler: it runs when a shard stops for
// good after READY (a close code that forbids reconnecting).
func (r *runner) onShardGaveUp(g gateway.Gateway, err error, reconnect bool) {
	if reconnect || r.reopen.expected(g) {
		return
	}
	r.track.disconnected(g.ShardID(), false)
	r.fail(fmt.Errorf("%w: shard %d closed for good: %w", ErrShardFailed, g.ShardID(), err))
}

// handle is every shard's gateway event handler: it passes each event to
// disgo's event manager and records, once the listeners have returned, the
// sequence that is now safe to resume from.
func (r *runner) handle(g gateway.Gateway, t gateway.EventType, seq int, data gateway.EventData) {
	shard := g.ShardID()
	r.track.begin(shard)
	defer r.track.end(shard)
	defer func() {
		if p := recover(); p != nil {
			// disgo's typed handlers can panic on payloads they do not
			// expect; losing one event beats losing the process.
			r.log.Error("cluster: panic while handling a gateway event",
				slog.Int("shard_id", shard), slog.String("event_type", string(t)),
				slog.Int("sequence", seq), slog.Any("panic", p), slog.String("stack", string(debug.Stack())))
		}
	}()

	if r.o.Standby {
		r.trackOnly(g, t, seq, data)
		return
	}
	switch t {
	case gateway.EventTypeHeartbeatAck:
		// disgo keeps no synchronised latency. Read it here, on the shard's
		// goroutine right after it recorded the ACK: only the send time is
		// written elsewhere, and a torn read costs one wrong sample.
		r.track.setLatency(shard, g.Latency())
		r.client.EventManager.HandleGatewayEvent(g, t, seq, data)
		return
	case gateway.EventTypeRaw:
		r.track.rawSeen(shard, seq)
		if raw, ok := data.(gateway.EventRaw); ok {
			r.sh.events.add(string(raw.EventType))
		}
		proj := r.sh.proj
		if raw, ok := data.(gateway.EventRaw); ok && raw.Payload != nil && (proj != nil || r.o.OnRawEvent != nil) {
			// The payload reader can be read once: copy it, and hand
			// disgo's Raw listeners a fresh reader over the copy.
			b, err := readPayload(raw.Payload)
			if err == nil {
				if proj != nil {
					// Queued in sequence order, before the event counts as
					// handled: a saved session never points past it.
					proj.Enqueue(shard, string(raw.EventType), b)
				}
				if r.o.OnRawEvent != nil {
					ub := b
					if proj != nil {
						// The projector keeps b; the callee gets its own.
						ub = bytes.Clone(b)
					}
					r.callRaw(shard, string(raw.EventType), ub)
				}
				raw.Payload = bytes.NewReader(b)
				data = raw
			}
		}
		r.client.EventManager.HandleGatewayEvent(g, t, seq, data)
		return
	}

	r.client.EventManager.HandleGatewayEvent(g, t, seq, data)
	r.trackEvent(shard, seq, data)
}

// trackOnly is handle for a standby cluster: the events reach no listener,
// only the tracker (sessions, readiness, latency).
func (r *runner) trackOnly(g gateway.Gateway, t gateway.EventType, seq int, data gateway.EventData) {
	switch t {
	case gateway.EventTypeHeartbeatAck:
		r.track.setLatency(g.ShardID(), g.Latency())
	case gateway.EventTypeRaw:
		r.track.rawSeen(g.ShardID(), seq)
	default:
		r.trackEvent(g.ShardID(), seq, data)
	}
}

// trackEvent records a typed event in the tracker once its listeners
// returned.
func (r *runner) trackEvent(shard, seq int, data gateway.EventData) {
	switch d := data.(type) {
	case gateway.EventReady:
		ids := make([]snowflake.ID, len(d.Guilds))
		for i, g := range d.Guilds {
			ids[i] = g.ID
		}
		r.track.readyEvent(shard, seq, d.SessionID, d.ResumeGatewayURL, ids)
	case gateway.EventResumed:
		r.track.handled(shard, seq)
		r.track.resumedEvent(shard)
	case gateway.EventGuildCreate:
		r.track.guildEvent(shard, seq, d.ID, guildCreated)
	case gateway.EventGuildDelete:
		change := guildRemoved
		if d.Unavailable {
			change = guildUnavailable
		}
		r.track.guildEvent(shard, seq, d.ID, change)
	default:
		r.track.handled(shard, seq)
	}
}

// readPayload copies a raw event's payload. disgo hands a *bytes.Reader,
// whose size is known, so the copy is one allocation of the right size.
func readPayload(rd io.Reader) ([]byte, error) {
	if br, ok := rd.(*bytes.Reader); ok {
		b := make([]byte, br.Len())
		_, err := io.ReadFull(br, b)
		return b, err
	}
	return io.ReadAll(rd)
}

func (r *runner) callRaw(shard int, eventType string, b []byte) {
	defer r.recoverCallback("OnRawEvent")
	r.o.OnRawEvent(shard, eventType, b)
}
