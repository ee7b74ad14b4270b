package keyspace

import (
	"errors"
	"os"
	"path"
	"reflect"
	"regexp"
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

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"launcher", "cluster:3", "service:x:0", "cli-1a2b3c4d5e6f", "a.b_c-d", strings.Repeat("x", MaxNameLen)} {
		if err := CheckName(ok); err != nil {
			t.Errorf("CheckName(%q) = %v", ok, err)
		}
	}
	for _, bad := range []string{"", "x}{y", "{tag}", "a b", "glob*", "q?", "[a]", "new\nline", "nul\x00", "ünï", strings.Repeat("x", MaxNameLen+1)} {
		if err := CheckName(bad); !errors.Is(err, ErrBadName) {
			t.Errorf("CheckName(%q) = %v, want ErrBadName", bad, err)
		}
	}
}

// The README's key schema tables name every key this package builds.
func TestReadmeListsEveryKey(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	// Table rows start with the key in backquotes; placeholders such as
	// <shard> or <bucket> become N, as do the arguments below.
	placeholder := regexp.MustCompile(`<[a-z]+>`)
	listed := map[string]bool{}
	for _, line := range strings.Split(string(readme), "\n") {
		if rest, ok := strings.CutPrefix(line, "| `"); ok {
			if key, _, ok := strings.Cut(rest, "`"); ok {
				listed[placeholder.ReplaceAllString(key, "N")] = true
			}
		}
	}
	k := MustNew("ns")
	v := reflect.ValueOf(k)
	digits := regexp.MustCompile(`[0-9]+`)
	for i := 0; i < v.NumMethod(); i++ {
		m, name := v.Method(i), v.Type().Method(i).Name
		if name == "Namespace" || name == "Base" || name == "InboxGroup" {
			continue
		}
		args := make([]reflect.Value, m.Type().NumIn())
		for j := range args {
			switch m.Type().In(j).Kind() {
			case reflect.String:
				args[j] = reflect.ValueOf("N")
			case reflect.Int:
				args[j] = reflect.ValueOf(7)
			case reflect.Uint64:
				args[j] = reflect.ValueOf(uint64(7))
			default:
				t.Fatalf("%s takes a %s", name, m.Type().In(j))
			}
		}
		key := strings.TrimPrefix(m.Call(args)[0].String(), k.Base())
		key = digits.ReplaceAllString(key, "N")
		if !listed[key] {
			t.Errorf("keyspace.%s builds %q, which the README's key tables do not list", name, key)
		}
	}
}

func TestNamespaceMarkers(t *testing.T) {
	ks := MustNew("bot-1")
	for _, key := range []string{ks.Launcher(), ks.Gateway()} {
		matched := false
		for _, p := range NamespaceMarkerPatterns() {
			if ok, _ := path.Match(p, key); ok {
				matched = true
			}
		}
		if !matched {
			t.Errorf("no marker pattern matches %s", key)
		}
		if ns, ok := NamespaceOfMarker(key); !ok || ns != "bot-1" {
			t.Errorf("NamespaceOfMarker(%s) = %q, %v", key, ns, ok)
		}
	}
	tests := []struct {
		key, ns string
		ok      bool
	}{
		{"megane:launcher:gateway", "launcher", true},
		{"megane:gateway:launcher", "gateway", true},
		{"megane:a:b:launcher", "", false},
		{"megane:a:shardmap", "", false},
		{"other:a:launcher", "", false},
	}
	for _, tt := range tests {
		if ns, ok := NamespaceOfMarker(tt.key); ok != tt.ok || (ok && ns != tt.ns) {
			t.Errorf("NamespaceOfMarker(%q) = %q, %v; want %q, %v", tt.key, ns, ok, tt.ns, tt.ok)
		}
	}
}
