package cache

import (
	"encoding/json"
	"testing"
)

func TestScannerAgreesWithEncodingJSON(t *testing.T) {
	in := []byte(` { "a" : "x\"y\\", "b":[1, {"c":"]}"}, null], "d": {"e": [] } , "f": -1.5e3, "g": true, "h": null } `)
	var want map[string]json.RawMessage
	if err := json.Unmarshal(in, &want); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	if err := eachMember(in, func(k, v []byte) error { got[string(k)] = string(v); return nil }); err != nil {
		t.Fatal(err)
	}
	for k, v := range want {
		if got[k] != string(v) {
			t.Errorf("%s = %s, want %s", k, got[k], v)
		}
	}
	s, ok := text([]byte(`"x\"y\\\u00e9"`))
	eq(t, "unescaped", s, `x"y\é`)
	eq(t, "ok", ok, true)
	eq(t, "truncate keeps runes whole", truncate("ééé", 5), "éé")
}

func FuzzProject(f *testing.F) {
	f.Add([]byte(`{"id":"1","name":"x","channels":[{"id":"2","thread_metadata":{"archived":true}}],"features":["NEWS"]}`))
	f.Add([]byte(`{"a":[{"b":"\\"}]}`))
	f.Add([]byte(`{`))
	f.Fuzz(func(t *testing.T, b []byte) {
		var h hashWrite
		for _, e := range AllEntities {
			_ = projectX(e, b, allFields, &h, &extra{})
		}
		_ = eachElem(b, func([]byte) error { return nil })
		if json.Valid(b) && len(b) > 0 && b[0] == '{' {
			if err := eachMember(b, func(k, v []byte) error {
				if !json.Valid(v) {
					t.Fatalf("value %q of a valid object is not valid JSON", v)
				}
				return nil
			}); err != nil {
				t.Fatalf("valid object rejected: %v", err)
			}
		}
	})
}
