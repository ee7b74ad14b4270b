package cli

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/keyspace"
)

// TestCacheGuildPrintsEmptyListsAsLists: a guild without features prints
// "features": [] (and its fields as an object), never null.
func TestCacheGuildPrintsEmptyListsAsLists(t *testing.T) {
	m, rdb := testredis.Mini(t)
	ks := keyspace.MustNew("bot1")
	ctx := context.Background()
	rdb.HSet(ctx, ks.Guild(661720242585600000), "shard", "0", "name", "Plain")
	rdb.HSet(ctx, ks.Guild(661720242585600001), "shard", "0", "name", "News", "features", "NEWS,HUB")

	for _, tc := range []struct {
		id   string
		want []string
	}{
		{"661720242585600000", []string{}},
		{"661720242585600001", []string{"NEWS", "HUB"}},
	} {
		out, err := run(t, m.Addr(), "--namespace", "bot1", "cache", "guild", tc.id)
		if err != nil {
			t.Fatalf("cache guild %s: %v", tc.id, err)
		}
		if strings.Contains(out, "null") {
			t.Errorf("cache guild %s prints null:\n%s", tc.id, out)
		}
		var g struct {
			Features []string          `json:"features"`
			Fields   map[string]string `json:"fields"`
		}
		if err := json.Unmarshal([]byte(out), &g); err != nil {
			t.Fatalf("cache guild %s: %v\n%s", tc.id, err, out)
		}
		if g.Features == nil || strings.Join(g.Features, ",") != strings.Join(tc.want, ",") || g.Fields["shard"] != "0" {
			t.Errorf("cache guild %s: features %#v, fields %v", tc.id, g.Features, g.Fields)
		}
	}
}
