package store

import (
	"bytes"
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"time"
	"unicode/utf8"
)

// Limits of what the store accepts. They are checked before Redis is
// contacted, so a bad write fails with a clear error and never reaches the
// hash.
const (
	// MaxValueSize is the largest value, in bytes of its JSON: the default
	// payload limit of redisipc, so any value fits in an IPC request or
	// reply. A bucket is one hash on one Redis node; larger data belongs
	// somewhere else.
	MaxValueSize = 1 << 20
	// MaxNameSize is the longest bucket name or key, in bytes.
	MaxNameSize = 1024
)

var (
	// ErrInvalidUTF8 is returned (wrapped) for a bucket name, key or value
	// (any string inside it) that is not valid UTF-8. encoding/json would
	// silently turn the bad bytes into U+FFFD, and the value read back would
	// not be the value written.
	ErrInvalidUTF8 = errors.New("store: invalid UTF-8")
	// ErrValueTooLarge is returned (wrapped) for a value whose JSON is
	// longer than MaxValueSize.
	ErrValueTooLarge = errors.New("store: value too large")
	// ErrInvalidName is returned (wrapped) for an empty bucket name or key,
	// or one longer than MaxNameSize.
	ErrInvalidName = errors.New("store: invalid name")
	// ErrInvalidTTL is returned (wrapped) by every operation of a bucket
	// opened with a negative TTL or one below a millisecond (Redis counts
	// TTLs in whole milliseconds).
	ErrInvalidTTL = errors.New("store: invalid TTL")
)

// checkName checks a bucket name or key; what says which, and where says
// where it is (" of bucket b"), if anywhere.
func checkName(what, name, where string) error {
	switch {
	case name == "":
		return fmt.Errorf("%w: empty %s%s", ErrInvalidName, what, where)
	case len(name) > MaxNameSize:
		return fmt.Errorf("%w: %s%s of %d bytes, more than MaxNameSize (%d)", ErrInvalidName, what, where, len(name), MaxNameSize)
	case !utf8.ValidString(name):
		return fmt.Errorf("%w: %s %q%s", ErrInvalidUTF8, what, name, where)
	}
	return nil
}

// checkTTL checks the TTL of bucket; zero means none.
func checkTTL(bucket string, d time.Duration) error {
	if d != 0 && d < time.Millisecond {
		return fmt.Errorf("%w: %s for bucket %s (want 0 for none, or at least 1ms)", ErrInvalidTTL, d, bucket)
	}
	return nil
}

// encodeValue marshals v, the value of where, and checks the result
// against the limits.
func encodeValue(where string, v any) ([]byte, error) {
	data, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("store: encode %s: %w", where, err)
	}
	if len(data) > MaxValueSize {
		return nil, fmt.Errorf("%w: %d bytes of JSON for %s, more than MaxValueSize (%d)", ErrValueTooLarge, len(data), where, MaxValueSize)
	}
	// Bytes from a json.RawMessage or a MarshalJSON pass through as they are.
	if !utf8.Valid(data) {
		return nil, fmt.Errorf("%w: in the JSON for %s", ErrInvalidUTF8, where)
	}
	// encoding/json writes each invalid byte of a string as the escape
	// \ufffd, and never writes a valid U+FFFD that way, so the escape is the
	// trace of a replacement. It can also come verbatim from a RawMessage;
	// the walk over v tells the two apart, and runs only when needed.
	if hasReplacementEscape(data) && hasInvalidString(reflect.ValueOf(v), 0) {
		return nil, fmt.Errorf("%w: a string in the value for %s", ErrInvalidUTF8, where)
	}
	return data, nil
}

// hasReplacementEscape reports whether the JSON data holds the escape
// \ufffd (and not an escaped backslash followed by "ufffd").
func hasReplacementEscape(data []byte) bool {
	esc := []byte(`\ufffd`)
	for from := 0; ; {
		i := bytes.Index(data[from:], esc)
		if i < 0 {
			return false
		}
		i += from
		backslashes := 0
		for j := i - 1; j >= 0 && data[j] == '\\'; j-- {
			backslashes++
		}
		if backslashes%2 == 0 {
			return true
		}
		from = i + 1
	}
}

var (
	jsonMarshalerType = reflect.TypeFor[json.Marshaler]()
	textMarshalerType = reflect.TypeFor[encoding.TextMarshaler]()
)

// maxWalkDepth bounds the walk; encoding/json itself refuses cycles.
const maxWalkDepth = 100

// hasInvalidString reports whether a string that encoding/json would
// encode from v (string values, map keys, MarshalText results) is not
// valid UTF-8. MarshalJSON results are left to the check of the output.
func hasInvalidString(v reflect.Value, depth int) bool {
	if !v.IsValid() || depth > maxWalkDepth {
		return false
	}
	t := v.Type()
	if t.Implements(jsonMarshalerType) || (v.CanAddr() && reflect.PointerTo(t).Implements(jsonMarshalerType)) {
		return false
	}
	if v.CanInterface() && (t.Implements(textMarshalerType) || (v.CanAddr() && reflect.PointerTo(t).Implements(textMarshalerType))) {
		if v.Kind() == reflect.Pointer && v.IsNil() {
			return false
		}
		m, ok := v.Interface().(encoding.TextMarshaler)
		if !ok {
			m, ok = v.Addr().Interface().(encoding.TextMarshaler)
		}
		if ok {
			text, err := m.MarshalText()
			return err == nil && !utf8.Valid(text)
		}
	}
	switch v.Kind() {
	case reflect.String:
		return !utf8.ValidString(v.String())
	case reflect.Pointer, reflect.Interface:
		return !v.IsNil() && hasInvalidString(v.Elem(), depth+1)
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if (!f.IsExported() && !f.Anonymous) || f.Tag.Get("json") == "-" {
				continue
			}
			if hasInvalidString(v.Field(i), depth+1) {
				return true
			}
		}
	case reflect.Map:
		iter := v.MapRange()
		for iter.Next() {
			if k := iter.Key(); k.Kind() == reflect.String && !utf8.ValidString(k.String()) {
				return true
			}
			if hasInvalidString(iter.Value(), depth+1) {
				return true
			}
		}
	case reflect.Slice, reflect.Array:
		if t.Elem().Kind() == reflect.Uint8 && v.Kind() == reflect.Slice {
			return false // []byte is base64 in JSON
		}
		for i := range v.Len() {
			if hasInvalidString(v.Index(i), depth+1) {
				return true
			}
		}
	}
	return false
}
