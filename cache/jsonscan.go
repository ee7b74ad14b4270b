package cache

import (
	"bytes"
	"encoding/json"
	"errors"
	"strconv"
	"unicode/utf8"
)

// The projector reads only a few dozen fields out of payloads that are mostly
// nested arrays it does not keep (presences, voice states, stickers, ...).
// Decoding them into structs with encoding/json costs more than writing the
// result to Redis, so this file walks the raw bytes instead: values are
// returned as sub-slices of the payload and decoded only when kept. The
// walker also tells "absent" from "null", which struct decoding cannot, and
// that is what makes partial updates (GUILD_UPDATE) safe.

var errSyntax = errors.New("cache: malformed JSON payload")

func isSpace(c byte) bool { return c == ' ' || c == '\n' || c == '\r' || c == '\t' }

func skipSpace(b []byte, i int) int {
	for i < len(b) && isSpace(b[i]) {
		i++
	}
	return i
}

// skipString returns the index just past the string starting at b[i] == '"'.
func skipString(b []byte, i int) (int, error) {
	i++
	for {
		j := bytes.IndexByte(b[i:], '"')
		if j < 0 {
			return 0, errSyntax
		}
		end := i + j
		// An odd run of backslashes before the quote escapes it.
		n := 0
		for k := end - 1; k >= i && b[k] == '\\'; k-- {
			n++
		}
		if n%2 == 0 {
			return end + 1, nil
		}
		i = end + 1
	}
}

// skipValue returns the index just past the value starting at b[i].
func skipValue(b []byte, i int) (int, error) {
	if i >= len(b) {
		return 0, errSyntax
	}
	switch b[i] {
	case '"':
		return skipString(b, i)
	case '{', '[':
		depth := 0
		for i < len(b) {
			switch b[i] {
			case '"':
				j, err := skipString(b, i)
				if err != nil {
					return 0, err
				}
				i = j
				continue
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return i + 1, nil
				}
			}
			i++
		}
		return 0, errSyntax
	default:
		j := i
		for j < len(b) {
			c := b[j]
			if c == ',' || c == '}' || c == ']' || isSpace(c) {
				break
			}
			j++
		}
		if j == i {
			return 0, errSyntax
		}
		return j, nil
	}
}

// eachMember calls fn for every member of the JSON object obj, with the raw
// key (without quotes) and the raw value.
func eachMember(obj []byte, fn func(key, val []byte) error) error {
	i := skipSpace(obj, 0)
	if i >= len(obj) || obj[i] != '{' {
		return errSyntax
	}
	i = skipSpace(obj, i+1)
	if i < len(obj) && obj[i] == '}' {
		return nil
	}
	for {
		if i >= len(obj) || obj[i] != '"' {
			return errSyntax
		}
		kend, err := skipString(obj, i)
		if err != nil {
			return err
		}
		key := obj[i+1 : kend-1]
		i = skipSpace(obj, kend)
		if i >= len(obj) || obj[i] != ':' {
			return errSyntax
		}
		i = skipSpace(obj, i+1)
		vend, err := skipValue(obj, i)
		if err != nil {
			return err
		}
		if err := fn(key, obj[i:vend]); err != nil {
			return err
		}
		i = skipSpace(obj, vend)
		if i >= len(obj) {
			return errSyntax
		}
		if obj[i] == '}' {
			return nil
		}
		if obj[i] != ',' {
			return errSyntax
		}
		i = skipSpace(obj, i+1)
	}
}

// eachElem calls fn for every element of the JSON array arr. An absent
// (nil) or null arr has no elements.
func eachElem(arr []byte, fn func(elem []byte) error) error {
	i := skipSpace(arr, 0)
	if len(arr) == 0 || isNull(arr) {
		return nil
	}
	if i >= len(arr) || arr[i] != '[' {
		return errSyntax
	}
	i = skipSpace(arr, i+1)
	if i < len(arr) && arr[i] == ']' {
		return nil
	}
	for {
		end, err := skipValue(arr, i)
		if err != nil {
			return err
		}
		if err := fn(arr[i:end]); err != nil {
			return err
		}
		i = skipSpace(arr, end)
		if i >= len(arr) {
			return errSyntax
		}
		if arr[i] == ']' {
			return nil
		}
		if arr[i] != ',' {
			return errSyntax
		}
		i = skipSpace(arr, i+1)
	}
}

// member returns the raw value of key in obj, or nil when absent.
func member(obj []byte, key string) []byte {
	var out []byte
	_ = eachMember(obj, func(k, v []byte) error {
		if string(k) == key {
			out = v
			return errStop
		}
		return nil
	})
	return out
}

var errStop = errors.New("stop")

func isNull(v []byte) bool { return len(v) == 4 && string(v) == "null" }

// text returns the value as the string stored in Redis: a JSON string
// unquoted, true/false as "1"/"0", a number as written. ok is false for null,
// objects and arrays, which have no scalar form.
func text(v []byte) (s string, ok bool) {
	if len(v) == 0 {
		return "", false
	}
	switch v[0] {
	case '"':
		if bytes.IndexByte(v, '\\') < 0 {
			return string(v[1 : len(v)-1]), true
		}
		var u string
		if err := json.Unmarshal(v, &u); err != nil {
			return "", false
		}
		return u, true
	case 't':
		return "1", true
	case 'f':
		return "0", true
	case 'n', '{', '[':
		return "", false
	default:
		return string(v), true
	}
}

// snowflake parses a quoted (or, leniently, bare) snowflake; 0 when absent,
// null or malformed.
func snowflake(v []byte) uint64 {
	if len(v) >= 2 && v[0] == '"' {
		v = v[1 : len(v)-1]
	}
	n, err := strconv.ParseUint(string(v), 10, 64)
	if err != nil {
		return 0
	}
	return n
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if n < 0 || len(s) <= n {
		return s
	}
	for n > 0 && !utf8.RuneStart(s[n]) {
		n--
	}
	return s[:n]
}
