package store

import (
	"encoding/json"
	"errors"
	"testing"
	"unicode/utf8"
)

// FuzzEncodeValue: a string is stored exactly as given or refused with
// ErrInvalidUTF8 (or ErrValueTooLarge), never altered; raw JSON is stored
// only when it is valid UTF-8.
func FuzzEncodeValue(f *testing.F) {
	f.Add("plain", []byte(`{"a":1}`))
	f.Add("a\xffb", []byte("\"\xff\""))
	f.Add(`\ufffd`, []byte(`"\ufffd"`))
	f.Add("\uFFFD", []byte(`"\\ufffd"`))
	f.Add("\xed\xa0\x80", []byte(`[1,"\u00e9"]`))
	f.Fuzz(func(t *testing.T, s string, raw []byte) {
		for _, v := range []any{s, map[string]string{s: s}, []any{struct{ S string }{s}}} {
			data, err := encodeValue("b/k", v)
			if !utf8.ValidString(s) {
				if !errors.Is(err, ErrInvalidUTF8) {
					t.Fatalf("%q in %T: %v, want ErrInvalidUTF8", s, v, err)
				}
				continue
			}
			if errors.Is(err, ErrValueTooLarge) {
				continue
			}
			if err != nil {
				t.Fatalf("%q in %T: %v", s, v, err)
			}
			back, err := json.Marshal(v)
			if err != nil || string(back) != string(data) {
				t.Fatalf("stored %q, want %q", data, back)
			}
		}
		data, err := encodeValue("b/k", s)
		if err == nil {
			var back string
			if json.Unmarshal(data, &back) != nil || back != s {
				t.Fatalf("%q read back as %q", s, back)
			}
		}
		data, err = encodeValue("b/k", json.RawMessage(raw))
		switch {
		case !json.Valid(raw):
			if err == nil {
				t.Fatalf("invalid JSON %q accepted", raw)
			}
		case !utf8.Valid(raw):
			if !errors.Is(err, ErrInvalidUTF8) {
				t.Fatalf("raw %q: %v, want ErrInvalidUTF8", raw, err)
			}
		case err == nil && !utf8.Valid(data):
			t.Fatalf("stored invalid UTF-8 %q", data)
		}
	})
}
