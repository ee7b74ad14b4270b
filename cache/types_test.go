package cache

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestJSONEmptyCollections: empty lists and maps print as [] and {}, never
// null, however the value was built.
func TestJSONEmptyCollections(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    any
		want []string
	}{
		{"guild from the projection", guildFrom(1, map[string]string{"shard": "0", "name": "g"}), []string{`"features":[]`, `"fields":{"name":"g","shard":"0"}`}},
		{"zero guild", Guild{ID: 1}, []string{`"features":[]`, `"fields":{}`}},
		{"guild pointer", &Guild{ID: 1}, []string{`"features":[]`, `"fields":{}`}},
		{"guild with features", Guild{ID: 1, Features: []string{"NEWS"}}, []string{`"features":["NEWS"]`}},
		{"member without roles", memberFrom(1, 2, map[string]string{}), []string{`"roles":[]`, `"fields":{}`}},
		{"member with roles", Member{Roles: []uint64{7}}, []string{`"roles":[7]`}},
		{"channel", Channel{ID: 1}, []string{`"fields":{}`}},
		{"role", Role{ID: 1}, []string{`"fields":{}`}},
		{"user", User{ID: 1}, []string{`"fields":{}`}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := json.Marshal(tc.v)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(b), "null") {
				t.Errorf("null in %s", b)
			}
			for _, w := range tc.want {
				if !strings.Contains(string(b), w) {
					t.Errorf("%s lacks %s", b, w)
				}
			}
		})
	}
	// The tags still apply: ids as strings, round trip intact.
	g := Guild{ID: 661720242585600000, OwnerID: 5, Features: []string{"NEWS"}, Fields: map[string]string{"a": "b"}}
	b, _ := json.Marshal(g)
	if !strings.Contains(string(b), `"id":"661720242585600000"`) || !strings.Contains(string(b), `"owner_id":"5"`) {
		t.Errorf("tags lost: %s", b)
	}
	var back Guild
	if err := json.Unmarshal(b, &back); err != nil || back.ID != g.ID || back.Features[0] != "NEWS" || back.Fields["a"] != "b" {
		t.Errorf("round trip %+v, %v", back, err)
	}
}
