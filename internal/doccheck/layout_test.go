package doccheck

import (
	"fmt"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
)

// root is the module's directory, seen from this package's.
const root = "../.."

// module is the module path, read from go.mod.
func module(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if m, ok := strings.CutPrefix(line, "module "); ok {
			return strings.TrimSpace(m)
		}
	}
	t.Fatal("go.mod names no module")
	return ""
}

// packages returns every package directory of the module ("cache",
// "internal/testredis", …; "." for the root): the directories holding a .go
// file, outside testdata, hidden directories and nested modules. For each
// it lists the module packages its non-test files import, as directories.
func packages(t *testing.T, mod string) map[string][]string {
	t.Helper()
	pkgs := map[string][]string{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(root, path)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			n := d.Name()
			if rel != "." && (strings.HasPrefix(n, ".") || strings.HasPrefix(n, "_") || n == "testdata" || n == "vendor") {
				return filepath.SkipDir
			}
			if _, err := os.Stat(filepath.Join(path, "go.mod")); err == nil && rel != "." {
				return filepath.SkipDir // another module
			}
			return nil
		}
		if !strings.HasSuffix(rel, ".go") {
			return nil
		}
		dir := filepath.ToSlash(filepath.Dir(rel))
		if _, ok := pkgs[dir]; !ok {
			pkgs[dir] = nil
		}
		if strings.HasSuffix(rel, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.ImportsOnly)
		if err != nil {
			return err
		}
		for _, imp := range f.Imports {
			p, err := strconv.Unquote(imp.Path.Value)
			if err != nil {
				return err
			}
			if rest, ok := strings.CutPrefix(p, mod+"/"); ok {
				pkgs[dir] = append(pkgs[dir], rest)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

// layoutRow is one row of the README's Layout table: its layer ("0".."5",
// "tools", "tests") and the paths its second cell names.
type layoutRow struct {
	layer string
	paths []string
}

// layout reads the README's Layout table.
func layout(t *testing.T) []layoutRow {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	readme := string(b)
	start := strings.Index(readme, "\n## Layout\n")
	if start < 0 {
		t.Fatal("README.md has no Layout section")
	}
	section := readme[start+1:]
	if end := strings.Index(section[1:], "\n## "); end >= 0 {
		section = section[:end+1]
	}
	row := regexp.MustCompile("^\\| ([0-9]+|tools|tests) \\| ([^|]+) \\|")
	code := regexp.MustCompile("`([^`]+)`")
	var rows []layoutRow
	for _, line := range strings.Split(section, "\n") {
		m := row.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		r := layoutRow{layer: m[1]}
		for _, c := range code.FindAllStringSubmatch(m[2], -1) {
			r.paths = append(r.paths, c[1])
		}
		rows = append(rows, r)
	}
	if len(rows) == 0 {
		t.Fatal("README.md's Layout section has no table rows")
	}
	return rows
}

// TestLayoutListsEveryPackage fails when a package directory of the module
// is not named in the README's Layout table, or the table names a path that
// does not exist: a newcomer's map has every package on it, and nothing else.
func TestLayoutListsEveryPackage(t *testing.T) {
	pkgs := packages(t, module(t))
	listed := map[string]bool{}
	for _, r := range layout(t) {
		for _, p := range r.paths {
			if listed[p] {
				t.Errorf("README Layout table names %s twice", p)
			}
			listed[p] = true
			if _, err := os.Stat(filepath.Join(root, filepath.FromSlash(p))); err != nil {
				t.Errorf("README Layout table names %s, which does not exist", p)
			}
		}
	}
	var missing []string
	for dir := range pkgs {
		if !listed[dir+"/"] {
			missing = append(missing, dir+"/")
		}
	}
	sort.Strings(missing)
	for _, dir := range missing {
		t.Errorf("package directory %s is missing from the README's Layout table (add a row, with its layer)", dir)
	}
}

// TestLayersOnlyImportDownwards fails when a package of a numbered layer
// imports a package of a higher layer: the layers the README shows are the
// real dependency order.
func TestLayersOnlyImportDownwards(t *testing.T) {
	pkgs := packages(t, module(t))
	layerOf := map[string]int{}
	for _, r := range layout(t) {
		n, err := strconv.Atoi(r.layer)
		if err != nil {
			continue // tools and tests may import anything
		}
		for _, p := range r.paths {
			if dir, ok := strings.CutSuffix(p, "/"); ok {
				layerOf[dir] = n
			}
		}
	}
	var wrong []string
	for dir, n := range layerOf {
		seen := map[string]bool{}
		for _, imp := range pkgs[dir] {
			if m, ok := layerOf[imp]; ok && m > n && !seen[imp] {
				seen[imp] = true
				wrong = append(wrong, fmt.Sprintf("%s (layer %d) imports %s (layer %d)", dir, n, imp, m))
			}
		}
	}
	sort.Strings(wrong)
	for _, w := range wrong {
		t.Errorf("%s; move one of them, or the README's layers", w)
	}
}
