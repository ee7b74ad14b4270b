package keyspace

import (
	"errors"
	"strings"
	"testing"
)

func TestNewRejectsBadNamespaces(t *testing.T) {
	for _, ns := range []string{"", "has space", "a:b", "{tag}", strings.Repeat("x", 65)} {
		if _, err := New(ns); !errors.Is(err, ErrBadNamespace) {
			t.Errorf("New(%q) error = %v, want ErrBadNamespace", ns, err)
		}
	}
	for _, ns := range []string{"prod", "bot-1.eu_west", "1100000000000000001"} {
		if _, err := New(ns); err != nil {
			t.Errorf("New(%q) = %v, want nil", ns, err)
		}
	}
}

func TestKeysArePrefixedAndDistinct(t *testing.T) {
	k := MustNew("ns")
	keys := []string{
		k.Gateway(), k.ShardMap(), k.ShardSession(1), k.ShardStatus(1), k.IdentifyBucket(1),
		k.Cluster(1), k.ClusterHeartbeat(1), k.Events(), k.Stats("cluster:1"), k.StatsIndex(), k.Launcher(),
		k.Nodes(), k.Node("i"), k.Inbox("cluster:1"), k.Replies("i"), k.DeadLetter(),
		k.Broadcast(), k.StoreBucket("b"), k.StoreBuckets(),
		k.Guild(1), k.GuildChannels(1), k.GuildRoles(1), k.GuildMembers(1), k.GuildEmojis(1),
		k.Channel(1), k.Role(1), k.User(1), k.Member(1, 2), k.ShardGuilds(1),
		k.ShardUnavailable(1), k.ShardCounts(1), k.ShardProjected(1), k.Users(),
	}
	seen := map[string]bool{}
	for _, key := range keys {
		if !strings.HasPrefix(key, "megane:ns:") {
			t.Errorf("%q lacks the namespace prefix", key)
		}
		if seen[key] {
			t.Errorf("%q is built twice", key)
		}
		seen[key] = true
	}
}

func TestHashTagsGroupStreams(t *testing.T) {
	k := MustNew("ns")
	if got, want := k.Inbox("service:x"), "megane:ns:{inbox:service:x}"; got != want {
		t.Errorf("Inbox = %q, want %q", got, want)
	}
	if got, want := k.Guild(42), "megane:ns:guild:42"; got != want {
		t.Errorf("Guild = %q, want %q", got, want)
	}
}
