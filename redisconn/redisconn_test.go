package redisconn

import (
	"context"
	"errors"
	"testing"

	"github.com/redis/go-redis/v9"
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
	if got := Redact("redis://user:secret@h:1/0"); got != "redis://user:***@h:1/0" {
		t.Errorf("Redact = %q", got)
	}
	if got := Redact("redis://h:1"); got != "redis://h:1" {
		t.Errorf("Redact = %q", got)
	}
}

func TestEmbeddedAnswersAndOpenReportsDeadRedis(t *testing.T) {
	ctx := context.Background()
	e, err := StartEmbedded()
	if err != nil {
		t.Fatal(err)
	}
	c, err := Open(ctx, e.URL())
	if err != nil {
		t.Fatalf("Open(embedded): %v", err)
	}
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	addr := e.Addr()
	e.Close()
	if _, err := Open(ctx, "redis://"+addr); err == nil {
		t.Fatal("Open of a stopped Redis succeeded")
	}
}
