package embedded_test

import (
	"context"
	"testing"

	"github.com/megane-go/megane/redisconn"
	"github.com/megane-go/megane/redisconn/embedded"
)

func TestEmbeddedAnswersAndOpenReportsDeadRedis(t *testing.T) {
	ctx := context.Background()
	e, err := embedded.Start()
	if err != nil {
		t.Fatal(err)
	}
	c, err := redisconn.Open(ctx, e.URL())
	if err != nil {
		t.Fatalf("Open(embedded): %v", err)
	}
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatal(err)
	}
	_ = c.Close()
	addr := e.Addr()
	e.Close()
	if _, err := redisconn.Open(ctx, "redis://"+addr); err == nil {
		t.Fatal("Open of a stopped Redis succeeded")
	}
}
