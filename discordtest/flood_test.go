package discordtest

import (
	"errors"
	"testing"
	"time"
)

func TestFloodSendsTheMixInSequence(t *testing.T) {
	srv := newTestServer(t, Options{World: WorldOptions{Guilds: 3, Seed: 1}})
	c := dial(t, srv, "", "")
	c.hello()
	rs := c.identify(srv.Token(), 0, 1, 3)
	f, err := srv.Flood(0, FloodOptions{MessageShare: 0.5, Window: 16})
	if err != nil {
		t.Fatal(err)
	}
	types := map[string]int{}
	for i := range 400 {
		fr := c.read() // every frame must decode with disgo's gateway types
		if fr.seq() != rs.Seq+1+i {
			t.Fatalf("frame %d: seq %d, want %d", i, fr.seq(), rs.Seq+1+i)
		}
		types[fr.typ()]++
	}
	sent, err := f.Stop()
	if err != nil {
		t.Fatal(err)
	}
	if sent < 400 {
		t.Fatalf("Stop reports %d events sent, the client read 400", sent)
	}
	if types["MESSAGE_CREATE"] != 200 {
		t.Errorf("MESSAGE_CREATE %d of 400, want half: %v", types["MESSAGE_CREATE"], types)
	}
	for _, typ := range []string{"GUILD_UPDATE", "GUILD_MEMBER_UPDATE", "GUILD_ROLE_UPDATE"} {
		if types[typ] == 0 {
			t.Errorf("no %s in the mix: %v", typ, types)
		}
	}
	if after := f.Sent(); after != sent {
		t.Errorf("Sent after Stop %d, Stop returned %d", after, sent)
	}
}

func TestFloodOfAShardWithoutGuilds(t *testing.T) {
	srv := newTestServer(t, Options{World: WorldOptions{Guilds: -1}})
	if _, err := srv.Flood(0, FloodOptions{}); !errors.Is(err, ErrFloodNoEvents) {
		t.Fatalf("err %v, want ErrFloodNoEvents", err)
	}
}

func TestFloodStopsAtItsLimit(t *testing.T) {
	srv := newTestServer(t, Options{World: WorldOptions{Guilds: 2, Seed: 1}})
	c := dial(t, srv, "", "")
	c.hello()
	rs := c.identify(srv.Token(), 0, 1, 2)
	f, err := srv.Flood(0, FloodOptions{Limit: 50, Window: 8})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 50 {
		if fr := c.read(); fr.seq() != rs.Seq+1+i {
			t.Fatalf("frame %d: seq %d", i, fr.seq())
		}
	}
	<-f.Done()
	if n, err := f.Stop(); n != 50 || err != nil {
		t.Fatalf("Stop: %d, %v; want 50", n, err)
	}
	if _, err := c.readErr(200 * time.Millisecond); err == nil {
		t.Fatal("a frame after the limit")
	}
}
