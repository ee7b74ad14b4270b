package redisipc

import (
	"fmt"
	"reflect"
	"strings"
	"unicode/utf8"

	"github.com/expr-lang/expr"
	"github.com/expr-lang/expr/builtin"
	"github.com/expr-lang/expr/conf"
)

// builtinCost tells, from a builtin's (dereferenced) arguments, how many
// bytes its result may take. expr's own builtins check little: repeat
// allows a million copies of a string of any length, and join, replace,
// toJSON or flatten can return far more than they were given (an array
// that holds the same large array many times is small to build and huge
// to flatten or print).
type builtinCost func(r *evalRun, args []any) int64

var checkedBuiltins = map[string]builtinCost{
	"repeat": func(_ *evalRun, a []any) int64 {
		return mulSize(strLen(a, 0), max(toInt64(arg(a, 1)), 0))
	},
	"join": func(_ *evalRun, a []any) int64 {
		n, total := int64(collectionLen(arg(a, 0))), int64(0)
		forEach(arg(a, 0), func(v any) {
			if s, ok := v.(string); ok {
				total += int64(len(s))
			}
		})
		return total + mulSize(n, strLen(a, 1)) + mulSize(n, sizeSlot)
	},
	"replace": func(_ *evalRun, a []any) int64 {
		s, _ := arg(a, 0).(string)
		old, _ := arg(a, 1).(string)
		nw, _ := arg(a, 2).(string)
		n := int64(strings.Count(s, old))
		if len(a) == 4 {
			if lim := toInt64(a[3]); lim >= 0 && lim < n {
				n = lim
			}
		}
		return int64(len(s)) + mulSize(n, int64(len(nw)))
	},
	"split":      splitCost,
	"splitAfter": splitCost,
	"upper":      func(_ *evalRun, a []any) int64 { return 2 * strLen(a, 0) },
	"lower":      func(_ *evalRun, a []any) int64 { return 2 * strLen(a, 0) },
	"toBase64":   func(_ *evalRun, a []any) int64 { return strLen(a, 0)*4/3 + 4 },
	"fromBase64": func(_ *evalRun, a []any) int64 { return strLen(a, 0) },
	// Decoding JSON makes about 16 bytes of Go values per byte of input
	// ("[0,0,…" is an interface value and a float per two bytes).
	"fromJSON": func(_ *evalRun, a []any) int64 { return mulSize(strLen(a, 0), 16) },
	"toJSON":   func(r *evalRun, a []any) int64 { return r.sizeOf(arg(a, 0), true) },
	"string":   func(r *evalRun, a []any) int64 { return r.sizeOf(arg(a, 0), false) },
	"flatten":  func(r *evalRun, a []any) int64 { return mulSize(r.leaves(arg(a, 0)), sizeSlot) },
	"median":   func(r *evalRun, a []any) int64 { return mulSize(r.leaves(a), sizeSlot) },
	"concat": func(_ *evalRun, a []any) int64 {
		var n int64
		for _, v := range a {
			n += int64(collectionLen(v))
		}
		return mulSize(n, sizeSlot)
	},
	"keys":      perElement(sizeSlot),
	"values":    perElement(sizeSlot),
	"reverse":   perElement(sizeSlot),
	"sort":      perElement(sizeSlot),
	"take":      perElement(sizeSlot),
	"uniq":      perElement(sizeSlot + sizeMapEntry),
	"toPairs":   perElement(sizeSlot + sizeSliceHdr + 2*sizeSlot),
	"fromPairs": perElement(sizeMapEntry),
}

func arg(a []any, i int) any {
	if i < len(a) {
		return a[i]
	}
	return nil
}

func strLen(a []any, i int) int64 {
	s, _ := arg(a, i).(string)
	return int64(len(s))
}

func perElement(size int64) builtinCost {
	return func(_ *evalRun, a []any) int64 { return mulSize(int64(collectionLen(arg(a, 0))), size) }
}

func splitCost(_ *evalRun, a []any) int64 {
	s, _ := arg(a, 0).(string)
	sep, _ := arg(a, 1).(string)
	var n int64
	if sep == "" {
		n = int64(utf8.RuneCountInString(s))
	} else {
		n = int64(strings.Count(s, sep)) + 1
	}
	if len(a) == 3 {
		if lim := toInt64(a[2]); lim >= 0 && lim < n {
			n = lim
		}
	}
	return mulSize(n, sizeSlot) + sizeSliceHdr
}

func forEach(v any, f func(any)) {
	switch x := v.(type) {
	case []any:
		for _, e := range x {
			f(e)
		}
	case []string:
		for _, e := range x {
			f(e)
		}
	}
}

// checkedBuiltins returns the options that replace expr's builtins listed
// in checkedBuiltins with copies that charge their cost first. A replaced
// builtin keeps its name and type checks; it is called as a function.
func (r *evalRun) checkedBuiltins() []expr.Option {
	return []expr.Option{func(c *conf.Config) {
		for name, cost := range checkedBuiltins {
			orig, ok := c.Builtins[name]
			if !ok {
				continue
			}
			c.Disabled[name] = true
			delete(c.Builtins, name)
			c.Functions[name] = &builtin.Function{Name: name, Types: orig.Types, Validate: orig.Validate,
				Func: r.checked(orig, cost)}
		}
	}}
}

func (r *evalRun) checked(orig *builtin.Function, cost builtinCost) func(args ...any) (any, error) {
	return func(args ...any) (any, error) {
		// Builtins are handed dereferenced arguments.
		for i, a := range args {
			if orig.Deref == nil || (a != nil && orig.Deref(i, reflect.TypeOf(a))) {
				args[i] = deref(a)
			}
		}
		if err := r.charge(cost(r, args)); err != nil {
			return nil, err
		}
		switch {
		case orig.Name == "repeat":
			// expr's repeat refuses more than a million copies whatever
			// their length, a rule the byte budget replaces.
			s, ok := args[0].(string)
			n := toInt64(args[1])
			if !ok || n < 0 {
				return nil, fmt.Errorf("invalid argument for repeat (expected a string and a positive integer, got %T and %d)", args[0], n)
			}
			return strings.Repeat(s, int(n)), nil
		case orig.Fast != nil:
			if len(args) != 1 {
				return nil, fmt.Errorf("%s takes one argument, got %d", orig.Name, len(args))
			}
			return orig.Fast(args[0]), nil
		case orig.Safe != nil:
			out, _, err := orig.Safe(args...)
			return out, err
		default:
			return orig.Func(args...)
		}
	}
}

// sizeOf estimates the bytes of v printed as JSON (or with fmt, which is
// about as long), stopping as soon as the estimate exceeds the unspent
// budget: every step adds at least a byte, so the walk is bounded by the
// budget even for a value that holds one array many times over. indent
// counts json.MarshalIndent's two spaces per level.
func (r *evalRun) sizeOf(v any, indent bool) int64 {
	s := sizer{limit: r.remaining(), indent: indent, run: r}
	s.walk(reflect.ValueOf(v), 1)
	return s.n
}

// leaves counts the elements of v and of the arrays inside it, as far as
// the unspent budget allows.
func (r *evalRun) leaves(v any) int64 {
	s := sizer{limit: r.remaining() / sizeSlot, run: r, countOnly: true}
	s.walk(reflect.ValueOf(v), 1)
	return s.n
}

type sizer struct {
	n, limit  int64
	indent    bool
	countOnly bool
	run       *evalRun
	steps     int
}

// add counts k bytes and reports whether the walk should go on.
func (s *sizer) add(k int64) bool {
	s.n += k
	s.steps++
	if s.steps&4095 == 0 && s.run.check() != nil {
		s.n = s.limit + 1
	}
	return s.n <= s.limit
}

func (s *sizer) walk(v reflect.Value, depth int64) bool {
	for v.IsValid() && (v.Kind() == reflect.Pointer || v.Kind() == reflect.Interface) {
		if v.IsNil() {
			return s.add(4)
		}
		v = v.Elem()
	}
	if !v.IsValid() {
		return s.add(4)
	}
	if s.countOnly {
		if v.Kind() != reflect.Slice && v.Kind() != reflect.Array {
			return s.add(1)
		}
		for i := 0; i < v.Len(); i++ {
			if !s.walk(v.Index(i), depth+1) {
				return false
			}
		}
		return s.add(0)
	}
	sep := int64(1)
	if s.indent {
		sep = 2*depth + 2
	}
	switch v.Kind() {
	case reflect.String:
		return s.add(int64(v.Len()) + 2)
	case reflect.Bool:
		return s.add(5)
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64, reflect.Uintptr:
		return s.add(20)
	case reflect.Float32, reflect.Float64, reflect.Complex64, reflect.Complex128:
		return s.add(24)
	case reflect.Slice, reflect.Array:
		if v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.Uint8 {
			return s.add(int64(v.Len())*4/3 + 6)
		}
		if !s.add(2 + sep) {
			return false
		}
		for i := 0; i < v.Len(); i++ {
			if !s.add(sep) || !s.walk(v.Index(i), depth+1) {
				return false
			}
		}
		return true
	case reflect.Map:
		if !s.add(2 + sep) {
			return false
		}
		it := v.MapRange()
		for it.Next() {
			if !s.add(sep+3) || !s.walk(it.Key(), depth+1) || !s.walk(it.Value(), depth+1) {
				return false
			}
		}
		return true
	case reflect.Struct:
		if !s.add(2 + sep) {
			return false
		}
		t := v.Type()
		for i := 0; i < v.NumField(); i++ {
			if !t.Field(i).IsExported() {
				continue
			}
			if !s.add(sep+int64(len(t.Field(i).Name))+3) || !s.walk(v.Field(i), depth+1) {
				return false
			}
		}
		return true
	}
	return s.add(8)
}
