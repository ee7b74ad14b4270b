package discordtest

import (
	"encoding/json"
	"strings"

	"github.com/disgoorg/disgo/gateway"
	"github.com/disgoorg/snowflake/v2"
)

type requestMembersData struct {
	GuildID json.RawMessage `json:"guild_id"`
	Query   *string         `json:"query"`
	Limit   int             `json:"limit"`
	UserIDs json.RawMessage `json:"user_ids"`
	Nonce   string          `json:"nonce"`
}

// snowflakes accepts a snowflake or an array of them, as op 8 allows both.
func snowflakes(raw json.RawMessage) ([]snowflake.ID, error) {
	if len(raw) == 0 || string(raw) == "null" {
		return nil, nil
	}
	var many []snowflake.ID
	if err := json.Unmarshal(raw, &many); err == nil {
		return many, nil
	}
	var one snowflake.ID
	if err := json.Unmarshal(raw, &one); err != nil {
		return nil, err
	}
	return []snowflake.ID{one}, nil
}

type wireMembersChunk struct {
	GuildID    snowflake.ID   `json:"guild_id"`
	Members    []wireMember   `json:"members"`
	ChunkIndex int            `json:"chunk_index"`
	ChunkCount int            `json:"chunk_count"`
	NotFound   []snowflake.ID `json:"not_found"`
	Presences  []any          `json:"presences,omitempty"`
	Nonce      string         `json:"nonce,omitempty"`
}

func (s *Server) onRequestGuildMembers(c *conn, raw json.RawMessage) {
	var d requestMembersData
	if err := json.Unmarshal(raw, &d); err != nil {
		s.closeConn(c, 4002, "Error while decoding payload.")
		return
	}
	guilds, err1 := snowflakes(d.GuildID)
	users, err2 := snowflakes(d.UserIDs)
	if err1 != nil || err2 != nil {
		s.closeConn(c, 4002, "Error while decoding payload.")
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	sess := c.sess
	if sess == nil || c.gone {
		return
	}
	if !s.opts.IgnoreIntents && len(users) == 0 && (d.Query == nil || *d.Query == "") &&
		sess.intents&int64(gateway.IntentGuildMembers) == 0 {
		// The whole member list needs GUILD_MEMBERS; Discord does not answer.
		s.counters.MemberRequestsRefused++
		s.notifyLocked()
		return
	}
	for _, gid := range guilds {
		g, ok := s.world.Guild(gid)
		if !ok || ShardFor(gid, sess.count) != sess.shard {
			// Discord ignores requests for guilds the shard does not own.
			continue
		}
		var members []wireMember
		notFound := []snowflake.ID{}
		if len(users) > 0 {
			for _, uid := range users {
				if m, ok := s.world.Member(gid, uid); ok {
					members = append(members, s.world.wireMember(m, 0))
				} else {
					notFound = append(notFound, uid)
				}
			}
		} else {
			query := ""
			if d.Query != nil {
				query = strings.ToLower(*d.Query)
			}
			for i := range g.Members {
				m := &g.Members[i]
				if query != "" {
					u, ok := s.world.User(m.UserID)
					if !ok || !strings.HasPrefix(strings.ToLower(u.Username), query) {
						continue
					}
				}
				members = append(members, s.world.wireMember(m, 0))
				if d.Limit > 0 && len(members) >= d.Limit {
					break
				}
			}
		}
		const chunkSize = 1000
		chunks := max(1, (len(members)+chunkSize-1)/chunkSize)
		for i := 0; i < chunks; i++ {
			part := members[min(i*chunkSize, len(members)):min((i+1)*chunkSize, len(members))]
			if part == nil {
				part = []wireMember{}
			}
			chunk := wireMembersChunk{GuildID: gid, Members: part, ChunkIndex: i, ChunkCount: chunks, NotFound: notFound, Nonce: d.Nonce}
			s.deliverLocked(sess, "GUILD_MEMBERS_CHUNK", mustJSON(chunk))
		}
	}
	s.notifyLocked()
}
