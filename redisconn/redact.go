package redisconn

import (
	"context"
	"errors"
	"net/url"
	"strings"
)

// Redact returns url with its passwords replaced by "***", for logs and
// errors: the password of the user info and the value of any query
// parameter whose name contains "password" (a Sentinel URL carries the
// master's password as password=). It works on malformed URLs too.
func Redact(url string) string {
	prefix, rest := "", url
	if s, r, ok := strings.Cut(url, "://"); ok {
		prefix, rest = s+"://", r
	}
	authority, query, hasQuery := strings.Cut(rest, "?")
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		if user, _, hasPass := strings.Cut(authority[:at], ":"); hasPass {
			authority = user + ":***" + authority[at:]
		}
	}
	out := prefix + authority
	if !hasQuery {
		return out
	}
	parts := strings.Split(query, "&")
	for i, part := range parts {
		if name, _, ok := strings.Cut(part, "="); ok && isSecretParam(name) {
			parts[i] = name + "=***"
		}
	}
	return out + "?" + strings.Join(parts, "&")
}

func isSecretParam(name string) bool {
	if n, err := url.QueryUnescape(name); err == nil {
		name = n
	}
	return strings.Contains(strings.ToLower(name), "password")
}

// secrets returns the passwords in rawURL, as written and unescaped.
func secrets(rawURL string) []string {
	var out []string
	add := func(s string) {
		if s == "" {
			return
		}
		out = append(out, s)
		for _, unescape := range []func(string) (string, error){url.PathUnescape, url.QueryUnescape} {
			if u, err := unescape(s); err == nil && u != s && u != "" {
				out = append(out, u)
			}
		}
	}
	rest := rawURL
	if _, r, ok := strings.Cut(rawURL, "://"); ok {
		rest = r
	}
	authority, query, _ := strings.Cut(rest, "?")
	if at := strings.LastIndex(authority, "@"); at >= 0 {
		if _, pass, ok := strings.Cut(authority[:at], ":"); ok {
			add(pass)
		}
	}
	query, _, _ = strings.Cut(query, "#")
	for _, part := range strings.Split(query, "&") {
		if name, value, ok := strings.Cut(part, "="); ok && isSecretParam(name) {
			add(value)
		}
	}
	return out
}

// redactedError is an error whose text had a password taken out. It unwraps
// to the sentinel errors the original matched, not to the original, whose
// text still holds the password.
type redactedError struct {
	msg  string
	kind []error
}

func (e *redactedError) Error() string   { return e.msg }
func (e *redactedError) Unwrap() []error { return e.kind }

// scrub returns err unchanged when its text holds no password of rawURL,
// and otherwise an error with the same text where the URL is redacted and
// every password replaced by "***".
func scrub(err error, rawURL string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := strings.ReplaceAll(msg, rawURL, Redact(rawURL))
	for _, s := range secrets(rawURL) {
		clean = strings.ReplaceAll(clean, s, "***")
	}
	if clean == msg {
		return err
	}
	var kind []error
	for _, k := range []error{ErrBadURL, ErrBadTLS, context.Canceled, context.DeadlineExceeded} {
		if errors.Is(err, k) {
			kind = append(kind, k)
		}
	}
	return &redactedError{msg: clean, kind: kind}
}
