package redisconn

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/internal/testredis"
)

func TestNewParsesEveryForm(t *testing.T) {
	tests := []struct {
		url  string
		want string
	}{
		{"redis://127.0.0.1:6379/0", "*redis.Client"},
		{"rediss://user:pw@example.com:6380", "*redis.Client"},
		{"redis+cluster://127.0.0.1:7000?addr=127.0.0.1:7001", "*redis.ClusterClient"},
		{"redis+sentinel://127.0.0.1:26379?master_name=mymaster", "*redis.Client"},
	}
	for _, tt := range tests {
		c, err := New(tt.url)
		if err != nil {
			t.Fatalf("New(%q): %v", tt.url, err)
		}
		got := ""
		switch c.(type) {
		case *redis.Client:
			got = "*redis.Client"
		case *redis.ClusterClient:
			got = "*redis.ClusterClient"
		}
		if got != tt.want {
			t.Errorf("New(%q) = %T, want %s", tt.url, c, tt.want)
		}
		_ = c.Close()
	}
}

func TestNewRejectsBadURLs(t *testing.T) {
	for _, u := range []string{"", "localhost:6379", "http://x", "redis+mesh://x", "redis+sentinel://127.0.0.1:26379"} {
		if _, err := New(u); !errors.Is(err, ErrBadURL) {
			t.Errorf("New(%q) error = %v, want ErrBadURL", u, err)
		}
	}
}

func TestRedact(t *testing.T) {
	tests := []struct{ in, want string }{
		{"redis://user:secret@h:1/0", "redis://user:***@h:1/0"},
		{"redis://:secret@h:1", "redis://:***@h:1"},
		{"redis://h:1", "redis://h:1"},
		{"redis://user@h:1", "redis://user@h:1"},
		{"rediss://u:p@ss:w/rd@h:1/0?tls_ca_file=/a@b/ca.pem", "rediss://u:***@h:1/0?tls_ca_file=/a@b/ca.pem"},
		{"redis+sentinel://:s1@h:26379?master_name=m&password=s2&sentinel_password=s3",
			"redis+sentinel://:***@h:26379?master_name=m&password=***&sentinel_password=***"},
		{":secret@h:1", ":***@h:1"},
		{"u:secret@h:1/0", "u:***@h:1/0"},
	}
	for _, tt := range tests {
		if got := Redact(tt.in); got != tt.want {
			t.Errorf("Redact(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestErrorsNeverCarryThePassword feeds New and Open URLs that fail in every
// way they can, each holding a password, and checks that no error shows it.
func TestErrorsNeverCarryThePassword(t *testing.T) {
	const pw = "s3cr3t-Pa55"
	bad := []string{
		"u:" + pw + "@h:1",                                    // no scheme
		"redis://u:" + pw + "@h:notaport",                     // url.Parse error, which quotes the URL
		"redis://u:" + pw + "%zz@h:1",                         // bad escape
		"redis://u:" + pw + "@h:1/notadb",                     // bad database
		"redis://u:" + pw + "@h:1?no_such_option=1",           // go-redis refuses the parameter
		"redis://u:" + pw + "@h:1?tls_ca_file=/x",             // TLS on redis://
		"rediss://u:" + pw + "@h:1?tls_ca_file=/no/such/file", // unreadable CA
		"rediss://u:" + pw + "@h:1?tls_ca_file=%zz",           // bad escape in our parameter
		"redis+cluster://u:" + pw + "@h:notaport",
		"redis+sentinel://u:" + pw + "@h:26379", // no master_name
		"redis+sentinel://h:26379?master_name=m&password=" + pw + "&bogus=1",
	}
	for _, u := range bad {
		_, err := New(u)
		if err == nil {
			t.Errorf("New(%s) succeeded", Redact(u))
			continue
		}
		if strings.Contains(err.Error(), pw) || strings.Contains(err.Error(), "s3cr3t") {
			t.Errorf("New error shows the password: %v", err)
		}
		if !errors.Is(err, ErrBadURL) && !errors.Is(err, ErrBadTLS) {
			t.Errorf("New(%s) error %v is neither ErrBadURL nor ErrBadTLS", Redact(u), err)
		}
	}

	// A live server that refuses the password, and a dead port.
	srv := testredis.StartServer(t, testredis.ServerOptions{Args: []string{"--requirepass", "the-right-one"}})
	for _, u := range []string{
		"redis://default:" + pw + "@" + srv.Addr + "/0",
		"redis://:" + pw + "@" + srv.Addr,
		"redis://u:" + pw + "@127.0.0.1:1?dial_timeout=1s",
	} {
		c, err := Open(context.Background(), u)
		if err == nil {
			_ = c.Close()
			t.Errorf("Open(%s) succeeded", Redact(u))
			continue
		}
		if strings.Contains(err.Error(), pw) {
			t.Errorf("Open error shows the password: %v", err)
		}
		if !strings.Contains(err.Error(), ":***@") {
			t.Errorf("Open error %q does not name the redacted URL", err)
		}
	}
}
