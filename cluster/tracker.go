package cluster

import (
	"sort"
	"strconv"
	"sync"
	"time"

	"github.com/disgoorg/snowflake/v2"

	"github.com/megane-go/megane/lifecycle"
	"github.com/megane-go/megane/sessions"
	"github.com/megane-go/megane/shardstatus"
)

// Shard statuses written to keyspace.ShardStatus.
const (
	statusConnecting   = shardstatus.Connecting
	statusReady        = shardstatus.Ready
	statusResuming     = shardstatus.Resuming
	statusDisconnected = shardstatus.Disconnected
	statusStopped      = shardstatus.Stopped
)

// maxQueuedEvents bounds the lifecycle events waiting for Redis, so an
// outage cannot grow memory without limit; the oldest are dropped.
const maxQueuedEvents = 1000

// shardTrack is what the cluster knows of one shard, learnt from the
// events that pass through its handler rather than from disgo's gateway
// fields, which the shard's goroutines write without synchronisation.
type shardTrack struct {
	sessionID string
	resumeURL string
	// handled is the last sequence whose listeners have all returned.
	handled int
	// received is the last sequence seen on the raw path. Events of a shard
	// are handled one at a time, so when sequence n+1 arrives every
	// listener of n has returned; this covers event types disgo does not
	// decode, which never reach a typed handler.
	received int
	// resumeFrom is the saved sequence a start resumes from, until its
	// RESUMED (the replay's count is reported then); 0 otherwise.
	resumeFrom int

	version uint64 // bumped on every session change
	saved   uint64 // version last written to Redis

	connected   bool // READY or RESUMED seen and no disconnect since
	everReady   bool
	status      string
	statusDirty bool
	statusSaved bool // a status was written to Redis at least once
	latencyMS   int64

	// guilds counts the shard's guilds as of handled: READY's list, plus
	// guilds joined, minus guilds left; -1 while unknown (a shard resumed
	// from a session saved without a count). It is saved with the session,
	// so a resumed shard starts from the count at its sequence and the
	// replay brings it up to date. unavailable holds the guilds READY or an
	// outage announced whose GUILD_CREATE is still to come: that
	// GUILD_CREATE is no join. Without the projection this is the shard's
	// guild count; with it, the projection's guild set is (see guildCounts).
	guilds      int
	unavailable map[snowflake.ID]struct{}

	inHandler int       // nesting depth of handler calls in flight
	since     time.Time // when the outermost one started
}

// tracker holds every shard's shardTrack, the lifecycle events waiting to
// be written, and the cluster's readiness.
type tracker struct {
	cluster    int
	shardCount int

	mu       sync.Mutex
	shards   map[int]*shardTrack
	events   []lifecycle.Event
	notReady int
	stopping bool

	ready chan struct{} // closed once every shard was READY or RESUMED
	wake  chan struct{} // asks the writer to flush now
}

func newTracker(cluster, shardCount int, ids []int, states map[int]sessions.State) *tracker {
	t := &tracker{
		cluster:    cluster,
		shardCount: shardCount,
		shards:     make(map[int]*shardTrack, len(ids)),
		notReady:   len(ids),
		ready:      make(chan struct{}),
		wake:       make(chan struct{}, 1),
	}
	for _, id := range ids {
		st := &shardTrack{status: statusConnecting, statusDirty: true, guilds: -1}
		if s, ok := states[id]; ok {
			// What Redis had is already saved: saved == version.
			st.sessionID, st.resumeURL, st.handled, st.received = s.SessionID, s.ResumeURL, s.Sequence, s.Sequence
			st.resumeFrom = s.Sequence
			st.status = statusResuming
			st.guilds = max(s.Guilds, -1)
		}
		t.shards[id] = st
	}
	if len(ids) == 0 {
		close(t.ready)
	}
	return t
}

func (t *tracker) poke() {
	select {
	case t.wake <- struct{}{}:
	default:
	}
}

func (t *tracker) queueLocked(ev lifecycle.Event) {
	if len(t.events) >= maxQueuedEvents {
		t.events = t.events[1:]
	}
	t.events = append(t.events, ev)
}

// begin and end bracket a handler call, for the stall check and the drain
// at stop.
func (t *tracker) begin(shard int) {
	t.mu.Lock()
	if st := t.shards[shard]; st != nil {
		if st.inHandler == 0 {
			st.since = time.Now()
		}
		st.inHandler++
	}
	t.mu.Unlock()
}

func (t *tracker) end(shard int) {
	t.mu.Lock()
	if st := t.shards[shard]; st != nil && st.inHandler > 0 {
		st.inHandler--
	}
	t.mu.Unlock()
}

// rawSeen records that dispatch seq arrived on shard: everything before it
// has been handled.
func (t *tracker) rawSeen(shard, seq int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.shards[shard]
	if st == nil {
		return
	}
	if st.received > st.handled {
		st.handled = st.received
		st.version++
	}
	if seq > st.received {
		st.received = seq
	}
}

// handled records that every listener of dispatch seq has returned.
func (t *tracker) handled(shard, seq int) {
	t.guildEvent(shard, seq, 0, guildNone)
}

// guildChange is what a dispatch did to a shard's guilds.
type guildChange int

const (
	guildNone        guildChange = iota
	guildCreated                 // GUILD_CREATE
	guildUnavailable             // GUILD_DELETE with unavailable: an outage
	guildRemoved                 // GUILD_DELETE: the bot left or was removed
)

// guildEvent records that every listener of dispatch seq has returned, and
// what it did to guild. Both change under one lock, so a saved session's
// guild count is exactly the count at its sequence.
func (t *tracker) guildEvent(shard, seq int, guild snowflake.ID, change guildChange) {
	t.mu.Lock()
	st := t.shards[shard]
	if st == nil || seq <= st.handled {
		t.mu.Unlock()
		return
	}
	switch change {
	case guildCreated:
		if _, ok := st.unavailable[guild]; ok {
			delete(st.unavailable, guild)
		} else if st.guilds >= 0 {
			st.guilds++
		}
	case guildUnavailable:
		if st.unavailable == nil {
			st.unavailable = map[snowflake.ID]struct{}{}
		}
		st.unavailable[guild] = struct{}{}
	case guildRemoved:
		delete(st.unavailable, guild)
		if st.guilds > 0 {
			st.guilds--
		}
	}
	first := st.handled == 0
	st.handled = seq
	if seq > st.received {
		st.received = seq
	}
	st.version++
	t.mu.Unlock()
	if first {
		// A new session: store it now rather than at the next tick, so a
		// crash right after READY still resumes.
		t.poke()
	}
}

// readyEvent records READY, once its listeners have returned: a new session
// replaces whatever the shard had, handled up to READY's sequence.
func (t *tracker) readyEvent(shard, seq int, sessionID, resumeURL string, guilds []snowflake.ID) {
	t.mu.Lock()
	st := t.shards[shard]
	if st == nil {
		t.mu.Unlock()
		return
	}
	st.sessionID, st.resumeURL = sessionID, resumeURL
	st.handled, st.received = seq, seq
	st.version++
	// Every guild of READY is unavailable until its GUILD_CREATE.
	st.guilds = len(guilds)
	st.unavailable = make(map[snowflake.ID]struct{}, len(guilds))
	for _, g := range guilds {
		st.unavailable[g] = struct{}{}
	}
	t.connectedLocked(shard, st, lifecycle.ShardReady, "")
	t.mu.Unlock()
	t.poke()
}

// resumedEvent records RESUMED.
func (t *tracker) resumedEvent(shard int) {
	t.mu.Lock()
	st := t.shards[shard]
	if st == nil {
		t.mu.Unlock()
		return
	}
	detail := ""
	if st.resumeFrom > 0 {
		// The raw path saw RESUMED's own sequence already: what came
		// between it and the saved sequence was replayed.
		detail = "replayed " + strconv.Itoa(max(st.received-st.resumeFrom-1, 0))
		st.resumeFrom = 0
	}
	t.connectedLocked(shard, st, lifecycle.ShardResumed, detail)
	t.mu.Unlock()
	t.poke()
}

func (t *tracker) connectedLocked(shard int, st *shardTrack, typ lifecycle.Type, detail string) {
	st.connected = true
	st.status, st.statusDirty = statusReady, true
	t.queueLocked(lifecycle.ShardEvent(typ, t.cluster, shard, detail))
	if !st.everReady {
		st.everReady = true
		t.notReady--
		if t.notReady == 0 {
			close(t.ready)
		}
	}
}

// disconnected records that a connected shard's gateway left the Ready
// state; resuming tells whether disgo is resuming the session.
func (t *tracker) disconnected(shard int, resuming bool) {
	t.mu.Lock()
	st := t.shards[shard]
	if st == nil || !st.connected || t.stopping {
		t.mu.Unlock()
		return
	}
	st.connected = false
	st.status, st.statusDirty = statusDisconnected, true
	if resuming {
		st.status = statusResuming
	}
	t.queueLocked(lifecycle.ShardEvent(lifecycle.ShardDisconnected, t.cluster, shard, ""))
	t.mu.Unlock()
	t.poke()
}

func (t *tracker) setLatency(shard int, d time.Duration) {
	t.mu.Lock()
	if st := t.shards[shard]; st != nil {
		st.latencyMS = d.Milliseconds()
	}
	t.mu.Unlock()
}

// publish queues a lifecycle event for the writer.
func (t *tracker) publish(ev lifecycle.Event) {
	t.mu.Lock()
	t.queueLocked(ev)
	t.mu.Unlock()
	t.poke()
}

// takeEvents removes and returns the queued lifecycle events, for a caller
// that writes them itself; on failure it hands them back with requeue.
func (t *tracker) takeEvents() []lifecycle.Event {
	t.mu.Lock()
	defer t.mu.Unlock()
	evs := t.events
	t.events = nil
	return evs
}

// requeue puts events a caller could not write back in front of the queue.
func (t *tracker) requeue(evs []lifecycle.Event) {
	t.failed(batch{events: evs})
}

// batch is one flush's worth of writes.
type batch struct {
	sessions map[int]sessions.State
	versions map[int]uint64
	statuses map[int]shardStatus
	events   []lifecycle.Event
}

type shardStatus struct {
	status string
}

func (b batch) empty() bool {
	return len(b.sessions) == 0 && len(b.statuses) == 0 && len(b.events) == 0
}

// take returns what changed since the last successful flush. final
// also counts sequences received but not yet confirmed as handled; it is
// only right once no handler is running.
func (t *tracker) take(final bool) batch {
	t.mu.Lock()
	defer t.mu.Unlock()
	b := batch{
		sessions: map[int]sessions.State{},
		versions: map[int]uint64{},
		statuses: map[int]shardStatus{},
		events:   t.events,
	}
	t.events = nil
	now := time.Now()
	for id, st := range t.shards {
		seq := st.handled
		if final && st.inHandler == 0 && st.received > seq {
			seq = st.received
		}
		if (st.version != st.saved || seq != st.handled) && st.sessionID != "" && seq > 0 {
			b.sessions[id] = sessions.State{
				SessionID: st.sessionID, Sequence: seq, ResumeURL: st.resumeURL,
				ShardCount: t.shardCount, Guilds: st.guilds, UpdatedAt: now,
			}
			b.versions[id] = st.version
		}
		if st.statusDirty {
			b.statuses[id] = shardStatus{status: st.status}
			st.statusDirty = false
		}
	}
	return b
}

// done records a successful flush of b.
func (t *tracker) done(b batch) {
	t.mu.Lock()
	for id, v := range b.versions {
		if st := t.shards[id]; st != nil && v > st.saved {
			st.saved = v
		}
	}
	for id := range b.statuses {
		if st := t.shards[id]; st != nil {
			st.statusSaved = true
		}
	}
	t.mu.Unlock()
}

// failed puts b's statuses and events back for the next flush.
func (t *tracker) failed(b batch) {
	t.mu.Lock()
	for id := range b.statuses {
		if st := t.shards[id]; st != nil {
			st.statusDirty = true
		}
	}
	events := append(b.events, t.events...)
	if len(events) > maxQueuedEvents {
		events = events[len(events)-maxQueuedEvents:]
	}
	t.events = events
	t.mu.Unlock()
}

// shardHealth is what the healer needs to know of one shard.
type shardHealth struct {
	saved       bool // its session is in Redis (written or loaded), as far as the cluster knows
	statusSaved bool // its status hash was written
	connected   bool
}

// health returns every shard's shardHealth.
func (t *tracker) health() map[int]shardHealth {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[int]shardHealth, len(t.shards))
	for id, st := range t.shards {
		out[id] = shardHealth{
			saved:       st.sessionID != "" && st.handled > 0 && st.saved == st.version,
			statusSaved: st.statusSaved && !st.statusDirty,
			connected:   st.connected,
		}
	}
	return out
}

// resave marks the sessions of shards and the statuses of statuses as not
// written, so the writer writes them again at once: Redis lost them.
func (t *tracker) resave(shards, statuses []int) {
	t.mu.Lock()
	for _, id := range shards {
		if st := t.shards[id]; st != nil && st.sessionID != "" && st.handled > 0 {
			st.version++
		}
	}
	for _, id := range statuses {
		if st := t.shards[id]; st != nil {
			st.statusDirty = true
		}
	}
	t.mu.Unlock()
	t.poke()
}

// stop marks the cluster as stopping: from now on disconnects are expected
// and every shard's status becomes "stopped".
func (t *tracker) stop() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stopping = true
	for id, st := range t.shards {
		if st.connected {
			t.queueLocked(lifecycle.ShardEvent(lifecycle.ShardDisconnected, t.cluster, id, "cluster stopping"))
		}
		st.connected = false
		st.status, st.statusDirty = statusStopped, true
	}
}

// stalled returns the longest time one shard's handler call has been
// running, and that shard.
func (t *tracker) stalled() (time.Duration, int) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var worst time.Duration
	shard := -1
	for id, st := range t.shards {
		if st.inHandler > 0 {
			if d := time.Since(st.since); d > worst {
				worst, shard = d, id
			}
		}
	}
	return worst, shard
}

// inFlight reports whether any handler call is running.
func (t *tracker) inFlight() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	for _, st := range t.shards {
		if st.inHandler > 0 {
			return true
		}
	}
	return false
}

// latencies returns every shard's last latency in ms.
func (t *tracker) latencies() map[int]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[int]int64, len(t.shards))
	for id, st := range t.shards {
		out[id] = st.latencyMS
	}
	return out
}

// isConnected reports whether shard is READY/RESUMED and not known to be
// disconnected.
func (t *tracker) isConnected(shard int) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	st := t.shards[shard]
	return st != nil && st.connected
}

func sortedIDs[V any](m map[int]V) []int {
	ids := make([]int, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	return ids
}

// shardInfo is one shard as the eval environment and statistics show it.
type shardInfo struct {
	ID        int
	Status    string
	LatencyMS int64
}

// snapshot returns every shard's status and latency, by shard id.
func (t *tracker) snapshot() []shardInfo {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make([]shardInfo, 0, len(t.shards))
	for _, id := range sortedIDs(t.shards) {
		st := t.shards[id]
		out = append(out, shardInfo{ID: id, Status: st.status, LatencyMS: st.latencyMS})
	}
	return out
}

// guildCounts returns every shard's guild count (see shardTrack.guilds);
// -1 where unknown.
func (t *tracker) guildCounts() map[int]int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	out := make(map[int]int64, len(t.shards))
	for id, st := range t.shards {
		out[id] = int64(st.guilds)
	}
	return out
}

// averageLatency is the mean of the shards' last latencies in ms, over the
// shards that measured one.
func (t *tracker) averageLatency() int64 {
	t.mu.Lock()
	defer t.mu.Unlock()
	var sum, n int64
	for _, st := range t.shards {
		if st.latencyMS > 0 {
			sum += st.latencyMS
			n++
		}
	}
	if n == 0 {
		return 0
	}
	return sum / n
}

// pendingGuilds counts the guilds READY (or an outage) announced whose
// GUILD_CREATE has not come yet, over every shard.
func (t *tracker) pendingGuilds() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	n := 0
	for _, st := range t.shards {
		n += len(st.unavailable)
	}
	return n
}
