package redisipc

import (
	"encoding/binary"
	"fmt"
	"time"
)

// envelopeVersion is the first byte of every encoded envelope. A decoder
// refuses versions it does not know instead of guessing at the layout.
const envelopeVersion = 1

// kind says what an envelope is for. It keeps control messages (wake-ups)
// apart from requests, so no request id or op can ever be mistaken for one.
type kind byte

const (
	kindRequest   kind = 1 // expects a reply on ReplyTo
	kindSend      kind = 2 // fire-and-forget
	kindReply     kind = 3 // answer to request ID
	kindBroadcast kind = 4 // pub/sub request to a target set; replies like kindRequest
	kindWake      kind = 5 // unblocks a reader on Close; carries nothing
)

// status of a reply.
type status byte

const (
	statusOK    status = 0
	statusError status = 1 // payload is the message, code says which
)

// envelope is one IPC message.
//
// Wire format, version 1 (all integers unsigned varints):
//
//	version(1 byte) kind(1 byte) status(1 byte) deadline_unix_ms
//	then length-prefixed: id, op, from, instance, to, reply_to, code, payload
type envelope struct {
	Kind     kind
	Status   status
	Deadline int64 // unix ms; 0 = none
	ID       string
	Op       string
	From     string // sender address
	Instance string // sender instance
	To       string // target address or broadcast target
	ReplyTo  string // instance whose reply stream gets the answer
	Code     string // error code of an error reply
	Payload  []byte
}

func (e *envelope) encode() []byte {
	n := 3 + binary.MaxVarintLen64 + 8*binary.MaxVarintLen32 +
		len(e.ID) + len(e.Op) + len(e.From) + len(e.Instance) + len(e.To) +
		len(e.ReplyTo) + len(e.Code) + len(e.Payload)
	b := make([]byte, 0, n)
	b = append(b, envelopeVersion, byte(e.Kind), byte(e.Status))
	b = binary.AppendUvarint(b, uint64(e.Deadline))
	for _, s := range [...]string{e.ID, e.Op, e.From, e.Instance, e.To, e.ReplyTo, e.Code} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendUvarint(b, uint64(len(e.Payload)))
	b = append(b, e.Payload...)
	return b
}

// decodeEnvelope parses b. It never panics: every length is checked against
// what is left, and unknown versions and kinds are refused.
func decodeEnvelope(b []byte) (*envelope, error) {
	if len(b) < 3 {
		return nil, fmt.Errorf("%w: %d bytes is too short", ErrBadEnvelope, len(b))
	}
	if b[0] != envelopeVersion {
		return nil, fmt.Errorf("%w: unknown version %d", ErrBadEnvelope, b[0])
	}
	e := &envelope{Kind: kind(b[1]), Status: status(b[2])}
	if e.Kind < kindRequest || e.Kind > kindWake {
		return nil, fmt.Errorf("%w: unknown kind %d", ErrBadEnvelope, b[1])
	}
	if e.Status > statusError {
		return nil, fmt.Errorf("%w: unknown status %d", ErrBadEnvelope, b[2])
	}
	b = b[3:]
	d, n := uvarint(b)
	if n <= 0 || d > 1<<62 {
		return nil, fmt.Errorf("%w: bad deadline", ErrBadEnvelope)
	}
	e.Deadline = int64(d)
	b = b[n:]
	var fields [8][]byte
	for i := range fields {
		l, n := uvarint(b)
		if n <= 0 {
			return nil, fmt.Errorf("%w: bad length of field %d", ErrBadEnvelope, i)
		}
		b = b[n:]
		if l > uint64(len(b)) {
			return nil, fmt.Errorf("%w: field %d claims %d bytes, %d left", ErrBadEnvelope, i, l, len(b))
		}
		fields[i], b = b[:l], b[l:]
	}
	if len(b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrBadEnvelope, len(b))
	}
	e.ID, e.Op, e.From, e.Instance = string(fields[0]), string(fields[1]), string(fields[2]), string(fields[3])
	e.To, e.ReplyTo, e.Code = string(fields[4]), string(fields[5]), string(fields[6])
	if len(fields[7]) > 0 {
		e.Payload = fields[7]
	}
	return e, nil
}

func (e *envelope) deadline() time.Time {
	if e.Deadline == 0 {
		return time.Time{}
	}
	return time.UnixMilli(e.Deadline)
}

// uvarint is binary.Uvarint that also refuses overlong encodings, so every
// envelope has exactly one encoding and a decoded envelope re-encodes to the
// bytes it came from.
func uvarint(b []byte) (uint64, int) {
	v, n := binary.Uvarint(b)
	if n > 1 && b[n-1] == 0 {
		return 0, 0
	}
	return v, n
}
