package cache

import (
	"encoding/json"
	"testing"
)

func BenchmarkDecodeGuild(b *testing.B) {
	_, rdb := newMini(b)
	p, err := NewProjector(Config{Redis: rdb, Keys: testKeys})
	if err != nil {
		b.Fatal(err)
	}
	data, _ := json.Marshal(guildCreate(typicalGuild(g1)))
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if d := p.decodeGuild(data); d.err != nil {
			b.Fatal(d.err)
		}
	}
}
