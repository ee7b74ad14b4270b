package discordtest

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/gorilla/websocket"
)

// readLoop reads commands until the connection ends and returns the close code the
// client sent, or 1006 when the connection just went away.
func (s *Server) readLoop(c *conn) int {
	for {
		_, data, err := c.ws.ReadMessage()
		if err != nil {
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				return ce.Code
			}
			return websocket.CloseAbnormalClosure
		}
		if c.isStopped() {
			// After our close frame only the client's close frame matters.
			continue
		}
		s.mu.Lock()
		s.counters.MessagesReceived++
		s.mu.Unlock()
		if !c.allowCommand(time.Now()) {
			s.closeConn(c, 4008, "Rate limited.")
			continue
		}
		s.handleCommand(c, data)
	}
}

type command struct {
	Op *int            `json:"op"`
	D  json.RawMessage `json:"d"`
}

func (s *Server) handleCommand(c *conn, data []byte) {
	var m command
	if err := json.Unmarshal(data, &m); err != nil || m.Op == nil {
		s.closeConn(c, 4002, "Error while decoding payload.")
		return
	}
	switch *m.Op {
	case opHeartbeat:
		s.onHeartbeat(c)
	case opIdentify:
		s.onIdentify(c, m.D)
	case opResume:
		s.onResume(c, m.D)
	case opPresenceUpdate, opVoiceStateUpdate, opRequestSoundboardSounds:
		if !s.identified(c) {
			s.closeConn(c, 4003, "Not authenticated.")
		}
	case opRequestGuildMembers:
		if !s.identified(c) {
			s.closeConn(c, 4003, "Not authenticated.")
			return
		}
		s.onRequestGuildMembers(c, m.D)
	default:
		s.closeConn(c, 4001, "Unknown opcode.")
	}
}

func (s *Server) identified(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return c.sess != nil
}
