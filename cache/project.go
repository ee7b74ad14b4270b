package cache

import (
	"strings"
)

// hashWrite is the projection of one object: fields to HSET and fields to
// HDEL (kept keys that are null now).
type hashWrite struct {
	set []any // field, value, field, value, ...
	del []string
}

func (h *hashWrite) reset() {
	h.set = h.set[:0]
	h.del = h.del[:0]
}

func (h *hashWrite) put(field, value string) {
	if h.set == nil {
		h.set = make([]any, 0, 24)
	}
	h.set = append(h.set, field, value)
}

// fields returns the projection as a map (owner replies, tests).
func (h *hashWrite) fields() map[string]string {
	m := make(map[string]string, len(h.set)/2)
	for i := 0; i+1 < len(h.set); i += 2 {
		m[h.set[i].(string)] = h.set[i+1].(string)
	}
	return m
}

// extra collects, in the same pass over an object, what the caller needs
// besides the kept fields.
type extra struct {
	id                                        uint64
	user                                      []byte // member: the user object
	channels, threads, roles, members, emojis []byte // guild: the arrays
}

// project appends the kept fields of the Discord object obj of kind e to h.
// Keys the projector manages itself (ids, guild_id, shard, unavailable) are
// skipped; the caller writes them.
func project(e Entity, obj []byte, fs *fieldSet, h *hashWrite) error {
	return projectX(e, obj, fs, h, nil)
}

// projectX is project that also fills x (when not nil).
func projectX(e Entity, obj []byte, fs *fieldSet, h *hashWrite, x *extra) error {
	return eachMember(obj, func(key, val []byte) error {
		switch string(key) {
		case "id":
			if x != nil {
				x.id = snowflake(val)
			}
			return nil
		case "guild_id", "shard", "unavailable":
			return nil
		}
		switch e {
		case EntityGuild:
			switch string(key) {
			case "features":
				if fs.kept(key) {
					if v, ok := encodeFeatures(val, fs.maxLen); ok {
						h.put("features", v)
					}
				}
				return nil
			case "channels", "threads", "roles", "members", "emojis":
				if x != nil {
					switch string(key) {
					case "channels":
						x.channels = val
					case "threads":
						x.threads = val
					case "roles":
						x.roles = val
					case "members":
						x.members = val
					case "emojis":
						x.emojis = val
					}
				}
				return nil
			}
		case EntityChannel:
			switch string(key) {
			case "thread_metadata":
				if isNull(val) {
					return nil
				}
				return eachMember(val, func(k, v []byte) error {
					scalar(fs, h, k, v)
					return nil
				})
			case "permission_overwrites":
				if fs.kept(key) {
					h.put("permission_overwrites", encodeOverwrites(val))
				}
				return nil
			}
		case EntityMember:
			switch string(key) {
			case "user":
				if x != nil {
					x.user = val
				}
				return nil
			case "roles":
				if fs.kept(key) {
					h.put("roles", idList(val))
				}
				return nil
			}
		}
		scalar(fs, h, key, val)
		return nil
	})
}

// small holds the one-byte values ("0", "1", ...) so that the most common
// values are not allocated again for every field.
var small = func() (t [128]any) {
	for i := range t {
		t[i] = string(rune(i))
	}
	return t
}()

// scalar stores a kept scalar; a kept null becomes an HDEL.
func scalar(fs *fieldSet, h *hashWrite, key, val []byte) {
	name, ok := fs.name(key)
	if !ok {
		return
	}
	if isNull(val) {
		h.del = append(h.del, name.s)
		return
	}
	if h.set == nil {
		h.set = make([]any, 0, 24)
	}
	if len(val) == 1 && val[0] < 0x80 {
		h.set = append(h.set, name.a, small[val[0]])
		return
	}
	s, ok := text(val)
	if !ok {
		return
	}
	if val[0] == '"' {
		s = truncate(s, fs.maxLen)
	}
	h.set = append(h.set, name.a, s)
}

// idList turns a JSON array of snowflakes into "id,id,...".
func idList(arr []byte) string {
	var b strings.Builder
	_ = eachElem(arr, func(e []byte) error {
		s, ok := text(e)
		if !ok {
			return nil
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s)
		return nil
	})
	return b.String()
}

// encodeOverwrites turns permission overwrites into "id:type:allow:deny,...".
func encodeOverwrites(arr []byte) string {
	var b strings.Builder
	_ = eachElem(arr, func(e []byte) error {
		var id, typ, allow, deny string
		_ = eachMember(e, func(k, v []byte) error {
			s, _ := text(v)
			switch string(k) {
			case "id":
				id = s
			case "type":
				typ = s
			case "allow":
				allow = s
			case "deny":
				deny = s
			}
			return nil
		})
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(id + ":" + typ + ":" + allow + ":" + deny)
		return nil
	})
	return b.String()
}
