package keyspace

import (
	"errors"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path"
	"path/filepath"
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
	var keys []string
	for _, row := range schema {
		m := reflect.ValueOf(k).MethodByName(row.builder)
		args := make([]reflect.Value, m.Type().NumIn())
		for j := range args {
			args[j] = reflect.New(m.Type().In(j)).Elem()
		}
		keys = append(keys, m.Call(args)[0].String())
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

// schema is what the README's key table must say: every key builder, the
// key it builds after the namespace prefix (placeholders in angle brackets)
// and its Redis type, which is also the last words of the builder's doc
// comment.
var schema = []struct{ builder, pattern, typ string }{
	{"Gateway", "gateway", "HASH"},
	{"ShardMap", "shardmap", "HASH"},
	{"ShardSession", "session:<shard>", "HASH"},
	{"ShardStatus", "shard:<shard>", "HASH"},
	{"IdentifyBucket", "identify:<bucket>", "STRING"},
	{"Cluster", "cluster:<id>", "HASH"},
	{"ClusterHeartbeat", "cluster:<id>:heartbeat", "STRING"},
	{"Launcher", "launcher", "HASH"},
	{"Events", "events", "STREAM"},
	{"Stats", "stats:<process>", "HASH"},
	{"StatsIndex", "stats-index", "ZSET"},
	{"Nodes", "nodes", "ZSET"},
	{"Node", "node:<instance>", "HASH"},
	{"Inbox", "{inbox:<addr>}", "STREAM"},
	{"Replies", "{replies:<instance>}", "STREAM"},
	{"DeadLetter", "deadletter", "STREAM"},
	{"DeadLetterSeen", "deadletter-seen:<digest>", "STRING"},
	{"Broadcast", "broadcast", "PubSub channel"},
	{"StoreBucket", "store:<bucket>", "HASH"},
	{"StoreBuckets", "store-buckets", "SET"},
	{"Guild", "guild:<guild>", "HASH"},
	{"GuildChannels", "guild:<guild>:channels", "SET"},
	{"GuildRoles", "guild:<guild>:roles", "SET"},
	{"GuildMembers", "guild:<guild>:members", "SET"},
	{"GuildEmojis", "guild:<guild>:emojis", "HASH"},
	{"Channel", "channel:<channel>", "HASH"},
	{"Role", "role:<role>", "HASH"},
	{"Member", "member:<guild>:<user>", "HASH"},
	{"User", "user:<user>", "HASH"},
	{"UserGuilds", "user:<user>:guilds", "SET"},
	{"Users", "users", "SET"},
	{"ShardGuilds", "shard:<shard>:guilds", "SET"},
	{"ShardUnavailable", "shard:<shard>:unavailable", "SET"},
	{"ShardCounts", "shard:<shard>:counts", "HASH"},
	{"ShardProjected", "shard:<shard>:projected", "STRING"},
	{"CacheSchema", "cache:schema", "HASH"},
	{"Lease", "lease:<name>", "HASH"},
	{"LauncherRecord", "launchers:<id>", "HASH"},
	{"Launchers", "launchers", "ZSET"},
	{"PlanLock", "plan-lock", "STRING"},
}

// notKeys are the methods of Keyspace that build no key.
var notKeys = map[string]bool{"Namespace": true, "Base": true, "InboxGroup": true, "Reshard": true}

// redisTypes are the types a key table row or a builder comment may name.
var redisTypes = []string{"HASH", "SET", "ZSET", "STRING", "STREAM", "PubSub channel"}

var placeholder = regexp.MustCompile(`<[a-z]+>`)

// build calls builder name with "N" for every string and 7 for every number,
// and returns the key without the namespace prefix, numbers made "N" too, so
// that it compares with a pattern whose placeholders are made "N".
func build(t *testing.T, k Keyspace, name string) string {
	t.Helper()
	m := reflect.ValueOf(k).MethodByName(name)
	if !m.IsValid() {
		t.Fatalf("keyspace has no builder %s", name)
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
	return regexp.MustCompile(`[0-9]+`).ReplaceAllString(key, "N")
}

// TestSchemaMatchesBuilders checks the schema table above against the
// package: every builder is in it, builds its pattern and names its type as
// the last words of its doc comment.
func TestSchemaMatchesBuilders(t *testing.T) {
	k := MustNew("ns")
	inSchema := map[string]bool{}
	for _, row := range schema {
		inSchema[row.builder] = true
		if got, want := build(t, k, row.builder), placeholder.ReplaceAllString(row.pattern, "N"); got != want {
			t.Errorf("%s builds %q, the schema says %q", row.builder, got, row.pattern)
		}
	}
	typ := reflect.TypeOf(k)
	for i := 0; i < typ.NumMethod(); i++ {
		if name := typ.Method(i).Name; !notKeys[name] && !inSchema[name] {
			t.Errorf("keyspace.%s is missing from the schema table in keyspace_test.go", name)
		}
	}

	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, "keyspace.go", nil, parser.ParseComments)
	if err != nil {
		t.Fatal(err)
	}
	comments := map[string]string{}
	for _, d := range f.Decls {
		if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv != nil && fn.Doc != nil {
			comments[fn.Name.Name] = strings.TrimSpace(fn.Doc.Text())
		}
	}
	for _, row := range schema {
		if c := comments[row.builder]; !strings.HasSuffix(c, " "+row.typ) && !strings.HasSuffix(c, "\n"+row.typ) {
			t.Errorf("the doc comment of keyspace.%s does not end with its type %s: %q", row.builder, row.typ, c)
		}
	}
}

// readmeKeySection returns the "Redis key schema" section of the README and
// the rest of it.
func readmeKeySection(t *testing.T) (section, rest string) {
	t.Helper()
	b, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	const heading = "\n## Redis key schema\n"
	start := strings.Index(readme, heading)
	if start < 0 {
		t.Fatalf("README.md has no %q section", strings.TrimSpace(heading))
	}
	end := strings.Index(readme[start+len(heading):], "\n## ")
	if end < 0 {
		end = len(readme)
	} else {
		end += start + len(heading)
	}
	return readme[start:end], readme[:start] + readme[end:]
}

// keyRow is a key table row: "| `pattern` | TYPE | ...".
var keyRow = regexp.MustCompile("^\\| `([^`]+)` \\| ([^|]+?) \\|")

// TestReadmeKeyTable checks the README's one key table against the schema:
// every key this package builds is a row, with its pattern and type, and
// every row is a key this package builds, once.
func TestReadmeKeyTable(t *testing.T) {
	section, _ := readmeKeySection(t)
	rows := map[string]string{}
	for _, line := range strings.Split(section, "\n") {
		m := keyRow.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		if _, dup := rows[m[1]]; dup {
			t.Errorf("README key table lists %q twice", m[1])
		}
		rows[m[1]] = m[2]
	}
	want := map[string]bool{}
	for _, row := range schema {
		want[row.pattern] = true
		got, ok := rows[row.pattern]
		switch {
		case !ok:
			t.Errorf("README key table has no row for %q (keyspace.%s)", row.pattern, row.builder)
		case got != row.typ:
			t.Errorf("README key table gives %q the type %q, keyspace.%s is a %s", row.pattern, got, row.builder, row.typ)
		}
	}
	for pattern := range rows {
		if !want[pattern] {
			t.Errorf("README key table lists %q, which package keyspace does not build", pattern)
		}
	}
}

// TestNoSecondKeyTable fails when a document other than the README's key
// table describes keys in a table: a Markdown row whose second cell is a
// Redis type, or a line of a listing that gives a "megane:<ns>:" key a type.
// One table, linked from everywhere else, cannot disagree with itself.
func TestNoSecondKeyTable(t *testing.T) {
	types := strings.Join(redisTypes, "|")
	patterns := []*regexp.Regexp{
		regexp.MustCompile(`^\s*(//\s*)?\|[^|]+\|\s*(` + types + `|PubSub|Pub/Sub channel)\s*\|`),
		regexp.MustCompile(`megane:<[a-z]+>:\S+\s+(` + types + `|PubSub)\b`),
	}
	check := func(name, text string) {
		for i, line := range strings.Split(text, "\n") {
			for _, re := range patterns {
				if re.MatchString(line) {
					t.Errorf("%s:%d describes a key outside the README's key table (link to it instead): %s", name, i+1, strings.TrimSpace(line))
					break
				}
			}
		}
	}
	_, rest := readmeKeySection(t)
	check("README.md", rest)
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if n := d.Name(); path != ".." && (strings.HasPrefix(n, ".") || n == "testdata") {
				return filepath.SkipDir
			}
			return nil
		}
		if path == filepath.Join("..", "README.md") || path == "keyspace_test.go" || filepath.Base(path) == "keyspace_test.go" {
			return nil
		}
		if ext := filepath.Ext(path); ext != ".md" && ext != ".go" {
			return nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		check(path, string(b))
		return nil
	})
	if err != nil {
		t.Fatal(err)
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

// TestReshardKeyspace checks the staging keyspace: its own namespace,
// valid even for the longest namespace.
func TestReshardKeyspace(t *testing.T) {
	if got := MustNew("bot").Reshard().Namespace(); got != "bot.reshard" {
		t.Errorf("staging namespace %q", got)
	}
	long := strings.Repeat("a", 64)
	st := MustNew(long).Reshard()
	if _, err := New(st.Namespace()); err != nil || len(st.Namespace()) > 64 || st.Namespace() == long {
		t.Errorf("staging namespace of a 64-character namespace: %q (%v)", st.Namespace(), err)
	}
}
