package discordtest

import (
	"encoding/json"
	"strconv"
	"strings"
	"time"

	"github.com/disgoorg/disgo/gateway"
)

func (s *Server) sendHello(c *conn, delay time.Duration) {
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-c.quit:
			return
		case <-s.done:
			return
		}
	}
	hello := `{"op":10,"s":null,"t":null,"d":{"heartbeat_interval":` +
		strconv.FormatInt(s.opts.HeartbeatInterval.Milliseconds(), 10) + `,"_trace":["discordtest"]}}`
	c.send([]byte(hello))
}

type identifyData struct {
	Token          string `json:"token"`
	LargeThreshold int    `json:"large_threshold"`
	Shard          []int  `json:"shard"`
	Intents        int64  `json:"intents"`
}

func (s *Server) checkToken(token string) bool {
	return strings.TrimPrefix(token, "Bot ") == s.opts.Token
}

func (s *Server) onIdentify(c *conn, raw json.RawMessage) {
	var d identifyData
	if err := json.Unmarshal(raw, &d); err != nil {
		s.closeConn(c, 4002, "Error while decoding payload.")
		return
	}
	if !s.checkToken(d.Token) {
		s.closeConn(c, 4004, "Authentication failed.")
		return
	}
	shard, count := 0, 1
	if d.Shard != nil {
		if len(d.Shard) != 2 {
			s.closeConn(c, 4010, "Invalid shard.")
			return
		}
		shard, count = d.Shard[0], d.Shard[1]
	}
	if count < 1 || shard < 0 || shard >= count {
		s.closeConn(c, 4010, "Invalid shard.")
		return
	}
	if d.Intents < 0 || d.Intents&^knownIntents != 0 {
		s.closeConn(c, 4013, "Invalid intent(s).")
		return
	}
	allowed := privilegedIntents
	if s.opts.PrivilegedIntents != nil {
		allowed = int64(*s.opts.PrivilegedIntents)
	}
	if d.Intents&privilegedIntents&^allowed != 0 {
		s.closeConn(c, 4014, "Disallowed intent(s).")
		return
	}

	s.mu.Lock()
	defer s.mu.Unlock()
	if c.gone || c.serverClose != 0 {
		return
	}
	if c.sess != nil {
		s.closeConnLocked(c, 4005, "Already authenticated.")
		return
	}
	if s.rejectCode != 0 && s.rejectCount == count {
		s.closeConnLocked(c, s.rejectCode, "Rejected by the test.")
		return
	}
	owned := s.world.GuildsOfShard(shard, count)
	if s.opts.MaxGuildsPerShard > 0 && len(owned) > s.opts.MaxGuildsPerShard {
		s.closeConnLocked(c, 4011, "Sharding required.")
		return
	}

	now := time.Now()
	bucket := shard % s.cfg.MaxConcurrency
	violation := false
	if last, ok := s.lastIdentify[bucket]; ok && now.Sub(last) < s.cfg.IdentifyWindow {
		violation = true
		s.violations = append(s.violations, Violation{
			At: now, Shard: shard, ShardCount: count, Bucket: bucket,
			SincePrevious: now.Sub(last), Remote: c.remote, Action: s.cfg.ViolationAction,
		})
		s.opts.Logger.Warn("identify concurrency violated", "shard", shard, "bucket", bucket, "since_previous", now.Sub(last))
		switch s.cfg.ViolationAction {
		case ViolationInvalidSession:
			s.counters.InvalidSessions++
			c.send(frameInvalidFalse)
			s.notifyLocked()
			return
		case ViolationClose4008:
			s.closeConnLocked(c, 4008, "Rate limited.")
			return
		}
	}
	s.lastIdentify[bucket] = now
	if s.remaining > 0 {
		s.remaining--
	} else {
		s.counters.StartsExhausted++
	}

	key := shardKey{shard, count}
	if old := s.current[key]; old != nil && !old.invalidated {
		// A shard has one session at a time; the old holder learns that its session is
		// gone the way Discord tells it, with INVALID_SESSION.
		s.invalidateLocked(old, "superseded by a new identify")
		if old.conn != nil {
			s.counters.InvalidSessions++
			old.conn.send(frameInvalidFalse)
		}
	}
	sess := &session{
		id: randomHex(32), shard: shard, count: count, intents: d.Intents,
		largeThreshold: d.LargeThreshold, created: now, remote: c.remote, conn: c,
	}
	s.sessions[sess.id] = sess
	s.current[key] = sess
	c.sess = sess

	ready := wireReady{
		V: 10, User: s.world.selfUser(), Guilds: make([]wireUnavailableGuild, 0, len(owned)),
		SessionID: sess.id, SessionType: "normal", ResumeGatewayURL: s.ResumeURL(),
		Shard: [2]int{shard, count}, Application: wireReadyApplication{ID: s.opts.AppID},
		PrivateChannels: []any{}, Relationships: []any{}, Presences: []any{}, GuildJoinRequests: []any{},
		GeoOrderedRTCRegion: []string{"local"}, Trace: []string{"discordtest"},
	}
	for _, g := range owned {
		ready.Guilds = append(ready.Guilds, wireUnavailableGuild{ID: g.ID, Unavailable: true})
	}
	s.deliverLocked(sess, "READY", mustJSON(ready))
	allMembers := s.opts.IgnoreIntents || d.Intents&int64(gateway.IntentGuildPresences) != 0
	for _, g := range owned {
		s.deliverLocked(sess, "GUILD_CREATE", mustJSON(s.world.guildCreate(g, d.LargeThreshold, allMembers)))
	}
	s.identifies = append(s.identifies, IdentifyRecord{
		At: now, Shard: shard, ShardCount: count, Bucket: bucket, SessionID: sess.id,
		Remote: c.remote, Intents: d.Intents, Violation: violation,
	})
	s.counters.Identifies++
	s.opts.Logger.Info("identify", "shard", shard, "shard_count", count, "session_id", sess.id, "guilds", len(owned))
	s.notifyLocked()
}
