package keyspace

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// luaCall matches a redis.call or redis.pcall in a Lua script and captures
// the command and its first argument.
var luaCall = regexp.MustCompile(`redis\.p?call\(\s*['"]([A-Za-z|]+)['"]\s*(?:,\s*([^,)]+))?`)

// keysArg is a key of KEYS.
var keysArg = regexp.MustCompile(`^KEYS\[\d+\]$`)

// keylessLua are the commands a script may call without a key.
var keylessLua = map[string]bool{"TIME": true, "PING": true}

// Redis Cluster runs a script on the node of its KEYS, and only a key
// named in KEYS is routed there: a key a script builds from ARGV or a
// string may live on another node (CROSSSLOT or a wrong answer). So every
// redis.call of every script in the module (redis.NewScript) must take its
// key from KEYS. That the KEYS of one script share a slot is checked on a
// real Redis Cluster by the tests scripts/test runs against one.
func TestScriptsTakeEveryKeyFromKEYS(t *testing.T) {
	found := 0
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
		if filepath.Ext(path) != ".go" || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), path, nil, 0)
		if err != nil {
			return err
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || len(call.Args) != 1 {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || sel.Sel.Name != "NewScript" {
				return true
			}
			lit, ok := call.Args[0].(*ast.BasicLit)
			if !ok || lit.Kind != token.STRING {
				t.Errorf("%s: redis.NewScript of something other than a string literal; this test cannot check it", path)
				return true
			}
			src, err := strconv.Unquote(lit.Value)
			if err != nil {
				t.Errorf("%s: %v", path, err)
				return true
			}
			found++
			for _, m := range luaCall.FindAllStringSubmatch(src, -1) {
				cmd, arg := strings.ToUpper(m[1]), strings.TrimSpace(m[2])
				if keylessLua[cmd] {
					continue
				}
				if !keysArg.MatchString(arg) {
					t.Errorf("%s: a script calls %s on %q, not on a key of KEYS", path, cmd, arg)
				}
			}
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if found < 5 {
		t.Errorf("found %d scripts, want the 5 or more of identify, sessions and store", found)
	}
}
