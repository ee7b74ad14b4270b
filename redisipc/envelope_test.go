package redisipc

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func TestEnvelopeRoundTrip(t *testing.T) {
	for _, e := range []envelope{
		{Kind: kindRequest, Deadline: 1700000000123, ID: "42", Op: "echo", From: "cluster:3", Instance: "i1",
			To: "service:x", ReplyTo: "i1", Payload: []byte("hello")},
		{Kind: kindSend, ID: "1"},
		{Kind: kindReply, Status: statusError, ID: "7", From: "service:x", Code: codeUnknown, Payload: []byte("no")},
		{Kind: kindBroadcast, To: TargetClusters, Payload: bytes.Repeat([]byte{0, 255}, 1000)},
		{Kind: kindWake},
	} {
		got, err := decodeEnvelope(e.encode())
		if err != nil {
			t.Fatalf("decode(%+v): %v", e, err)
		}
		if !reflect.DeepEqual(*got, e) {
			t.Fatalf("round trip:\n got %+v\nwant %+v", *got, e)
		}
	}
}

func TestEnvelopeRejects(t *testing.T) {
	good := (&envelope{Kind: kindRequest, ID: "1", Op: "x", Payload: []byte("p")}).encode()
	for name, b := range map[string][]byte{
		"empty":         nil,
		"short":         {1, 1},
		"version":       append([]byte{9}, good[1:]...),
		"kind":          append([]byte{1, 99}, good[2:]...),
		"status":        append([]byte{1, 1, 7}, good[3:]...),
		"truncated":     good[:len(good)-1],
		"trailing":      append(append([]byte{}, good...), 0),
		"huge length":   {1, 1, 0, 0, 0xff, 0xff, 0xff, 0xff, 0x0f},
		"bad varint":    {1, 1, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff},
		"missing field": {1, 1, 0, 0, 0},
	} {
		if _, err := decodeEnvelope(b); !errors.Is(err, ErrBadEnvelope) {
			t.Errorf("%s: err = %v, want ErrBadEnvelope", name, err)
		}
	}
}

// FuzzDecodeEnvelope checks the decoder never panics, and that whatever it
// accepts re-encodes to the same bytes (the format has one encoding).
func FuzzDecodeEnvelope(f *testing.F) {
	f.Add((&envelope{Kind: kindRequest, Deadline: 1, ID: "1", Op: "op", From: "cluster:0", Instance: "i",
		To: "service:s", ReplyTo: "i", Payload: []byte("{}")}).encode())
	f.Add((&envelope{Kind: kindReply, Status: statusError, Code: codeHandler, Payload: []byte("x")}).encode())
	f.Add([]byte{})
	f.Add([]byte{1, 1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := decodeEnvelope(b)
		if err != nil {
			return
		}
		if again := e.encode(); !bytes.Equal(again, b) {
			t.Fatalf("re-encoding %x gave %x", b, again)
		}
	})
}
