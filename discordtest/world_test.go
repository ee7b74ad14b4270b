package discordtest

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/disgoorg/snowflake/v2"

	"github.com/megane-go/megane/internal/testctx"
)

func TestWorldIsDeterministicAndSpreadsEvenly(t *testing.T) {
	opts := WorldOptions{Seed: 42, Guilds: 100, ChannelsPerGuild: 4, RolesPerGuild: 2, MembersPerGuild: 3, Users: 20}.withDefaults()
	bot := User{ID: DefaultAppID, Username: "fakebot", Bot: true}
	a, _, _ := generateWorld(context.Background(), opts, bot)
	b, _, _ := generateWorld(context.Background(), opts, bot)
	if !reflect.DeepEqual(a.Guilds, b.Guilds) || !reflect.DeepEqual(a.Users, b.Users) {
		t.Fatal("same seed produced different worlds")
	}
	other, _, _ := generateWorld(context.Background(), WorldOptions{Seed: 43, Guilds: 100}.withDefaults(), bot)
	if other.Guilds[0].ID == a.Guilds[0].ID {
		t.Fatal("different seeds produced the same ids")
	}
	ids := map[snowflake.ID]string{}
	unique := func(id snowflake.ID, what string) {
		if prev, ok := ids[id]; ok && !(what == "role" && prev == "guild") {
			t.Fatalf("%s id %v already used by a %s", what, id, prev)
		}
		ids[id] = what
	}
	for _, u := range a.Users {
		unique(u.ID, "user")
	}
	for i, g := range a.Guilds {
		unique(g.ID, "guild")
		if i > 0 && g.ID.Time().Before(a.Guilds[i-1].ID.Time()) {
			t.Fatal("guild timestamps are not increasing")
		}
		for _, c := range g.Channels {
			unique(c.ID, "channel")
		}
		// The @everyone role shares the guild id, as on Discord.
		if g.Roles[0].ID != g.ID {
			t.Fatalf("@everyone id %v != guild id %v", g.Roles[0].ID, g.ID)
		}
		for _, r := range g.Roles[1:] {
			unique(r.ID, "role")
		}
		if len(g.Members) != 4 || g.Members[len(g.Members)-1].UserID != bot.ID {
			t.Fatalf("guild %d members %+v", i, g.Members)
		}
	}
	for _, n := range []int{1, 3, 4, 7, 16} {
		counts := make([]int, n)
		for _, g := range a.Guilds {
			counts[ShardFor(g.ID, n)]++
		}
		for shard, c := range counts {
			if c < 100/n || c > 100/n+1 {
				t.Fatalf("%d shards: shard %d owns %d guilds (%v)", n, shard, c, counts)
			}
		}
	}
}

func TestTokenFor(t *testing.T) {
	if got := TokenFor(DefaultAppID); got != "MTEwMDAwMDAwMDAwMDAwMDAwMQ.fake.token" {
		t.Fatalf("TokenFor = %q", got)
	}
}

func TestDispatchUpdatesWorld(t *testing.T) {
	srv := newTestServer(t, Options{World: WorldOptions{Guilds: 2}})
	world := srv.World()
	g := world.Guilds[0]
	newUser := snowflake.ID(5555)
	steps := []struct {
		t     string
		d     any
		check func(w *World) bool
	}{
		{"GUILD_UPDATE", map[string]any{"id": g.ID, "name": "renamed"}, func(w *World) bool {
			wg, _ := w.Guild(g.ID)
			return wg.Name == "renamed"
		}},
		{"CHANNEL_CREATE", map[string]any{"id": "777", "type": 2, "guild_id": g.ID, "name": "new-voice", "position": 9, "permission_overwrites": []any{}}, func(w *World) bool {
			ch, ok := w.Channel(777)
			return ok && ch.Name == "new-voice" && ch.Type == ChannelTypeVoice && ch.GuildID == g.ID
		}},
		{"CHANNEL_UPDATE", map[string]any{"id": "777", "type": 2, "guild_id": g.ID, "name": "renamed-voice", "position": 9, "permission_overwrites": []any{}}, func(w *World) bool {
			ch, ok := w.Channel(777)
			return ok && ch.Name == "renamed-voice"
		}},
		{"CHANNEL_DELETE", map[string]any{"id": "777", "type": 2, "guild_id": g.ID, "name": "renamed-voice", "position": 9, "permission_overwrites": []any{}}, func(w *World) bool {
			_, ok := w.Channel(777)
			return !ok
		}},
		{"GUILD_MEMBER_ADD", map[string]any{"guild_id": g.ID, "user": map[string]any{"id": newUser, "username": "newbie", "discriminator": "0"}, "roles": []any{}, "joined_at": "2026-01-01T00:00:00Z", "deaf": false, "mute": false, "flags": 0}, func(w *World) bool {
			_, member := w.Member(g.ID, newUser)
			u, known := w.User(newUser)
			return member && known && u.Username == "newbie"
		}},
		{"GUILD_ROLE_CREATE", map[string]any{"guild_id": g.ID, "role": map[string]any{"id": "888", "name": "new-role", "permissions": "8", "position": 5, "color": 0, "hoist": false, "managed": false, "mentionable": false}}, func(w *World) bool {
			wg, _ := w.Guild(g.ID)
			return wg.Roles[len(wg.Roles)-1].ID == 888 && wg.Roles[len(wg.Roles)-1].Permissions == 8
		}},
		{"GUILD_MEMBER_UPDATE", map[string]any{"guild_id": g.ID, "user": map[string]any{"id": newUser, "username": "newbie", "discriminator": "0"}, "roles": []string{"888"}, "nick": "nick", "joined_at": "2026-01-01T00:00:00Z"}, func(w *World) bool {
			m, ok := w.Member(g.ID, newUser)
			return ok && m.Nick == "nick" && len(m.Roles) == 1
		}},
		{"GUILD_ROLE_DELETE", map[string]any{"guild_id": g.ID, "role_id": "888"}, func(w *World) bool {
			m, _ := w.Member(g.ID, newUser)
			wg, _ := w.Guild(g.ID)
			return len(m.Roles) == 0 && wg.Roles[len(wg.Roles)-1].ID != 888
		}},
		{"GUILD_MEMBER_REMOVE", map[string]any{"guild_id": g.ID, "user": map[string]any{"id": newUser, "username": "newbie", "discriminator": "0"}}, func(w *World) bool {
			_, ok := w.Member(g.ID, newUser)
			return !ok
		}},
		{"GUILD_DELETE", map[string]any{"id": g.ID, "unavailable": true}, func(w *World) bool {
			_, ok := w.Guild(g.ID)
			return ok // an outage keeps the guild
		}},
		{"GUILD_DELETE", map[string]any{"id": g.ID}, func(w *World) bool {
			_, ok := w.Guild(g.ID)
			return !ok && len(w.Guilds) == 1
		}},
		{"GUILD_CREATE", map[string]any{"id": "1191168914233681999", "name": "joined"}, func(w *World) bool {
			wg, ok := w.Guild(1191168914233681999)
			return ok && wg.Name == "joined"
		}},
	}
	for _, st := range steps {
		// No session is connected: the world still changes and the caller learns that
		// nobody received the event.
		if _, err := srv.Dispatch(0, st.t, st.d); !errors.Is(err, ErrNoSession) {
			t.Fatalf("%s: %v", st.t, err)
		}
		if !st.check(srv.World()) {
			t.Fatalf("world not updated after %s", st.t)
		}
	}
	// REST follows the world.
	status, _, b := httpDo(t, "GET", srv.RESTURL()+"/guilds/"+g.ID.String(), "Bot "+srv.Token(), "")
	if status != 404 {
		t.Fatalf("deleted guild over REST: %d %s", status, b)
	}
}

func TestDispatchRejectsPayloadsDisgoCannotHandle(t *testing.T) {
	srv := newTestServer(t, Options{World: WorldOptions{Guilds: 1}})
	gid := srv.World().Guilds[0].ID
	bad := []struct {
		name, t string
		d       any
	}{
		{"unquoted snowflake", "GUILD_UPDATE", json.RawMessage(`{"id":` + gid.String() + `}`)},
		{"numeric permissions", "GUILD_ROLE_CREATE", map[string]any{"guild_id": gid, "role": map[string]any{"id": "1", "permissions": 8}}},
		{"bad timestamp", "GUILD_MEMBER_ADD", map[string]any{"guild_id": gid, "user": map[string]any{"id": "5"}, "joined_at": "yesterday"}},
		{"DM channel in CHANNEL_CREATE", "CHANNEL_CREATE", map[string]any{"id": "5", "type": 1, "guild_id": gid}},
		{"unknown channel type", "CHANNEL_UPDATE", map[string]any{"id": "5", "type": 99, "guild_id": gid}},
		{"reserved READY", "READY", map[string]any{}},
		{"lowercase type", "message_create", map[string]any{}},
		{"not JSON", "GUILD_UPDATE", []byte("{")},
	}
	for _, tc := range bad {
		if _, err := srv.Dispatch(gid, tc.t, tc.d); !errors.Is(err, ErrInvalidPayload) {
			t.Errorf("%s: err = %v, want ErrInvalidPayload", tc.name, err)
		}
	}
	if st := srv.Stats(); st.Dispatches != 0 {
		t.Fatalf("%d dispatches went out", st.Dispatches)
	}
}

func TestJoinLeaveGuildAndUserMessage(t *testing.T) {
	srv := newTestServer(t, Options{World: WorldOptions{Guilds: 2}})
	c := dial(t, srv, "", "")
	c.hello()
	rs := c.identify(srv.Token(), 0, 1, 2)

	g, d, err := srv.JoinGuild("Joined")
	if err != nil || d.Seq != rs.Seq+1 {
		t.Fatalf("join: %+v %v", d, err)
	}
	if f := c.read(); f.typ() != "GUILD_CREATE" || !contains(string(f.D), `"name":"Joined"`) {
		t.Fatalf("got %s", f.raw)
	}
	world := srv.World()
	wg, ok := world.Guild(g.ID)
	if !ok || len(wg.Channels) != len(g.Channels) || len(wg.Members) != len(g.Members) || len(world.Guilds) != 3 {
		t.Fatalf("joined guild in world: %+v", wg)
	}
	// The joined guild continues the id sequence, so three guilds over three shards
	// land on three different shards.
	shardsUsed := map[int]bool{}
	for _, x := range world.Guilds {
		shardsUsed[ShardFor(x.ID, 3)] = true
	}
	if len(shardsUsed) != 3 {
		t.Fatalf("joined guild id %v does not continue the even spread", g.ID)
	}

	text, _ := world.FirstTextChannel(g.ID)
	if _, err := srv.SendUserMessage(text.ID, 0, "hi"); err != nil {
		t.Fatal(err)
	}
	f := c.read()
	var m struct {
		GuildID snowflake.ID `json:"guild_id"`
		Author  struct {
			ID snowflake.ID `json:"id"`
		} `json:"author"`
		Content string `json:"content"`
	}
	_ = json.Unmarshal(f.D, &m)
	if f.typ() != "MESSAGE_CREATE" || m.GuildID != g.ID || m.Content != "hi" || m.Author.ID != g.Members[0].UserID {
		t.Fatalf("got %s", f.raw)
	}

	if _, err := srv.LeaveGuild(g.ID); err != nil {
		t.Fatal(err)
	}
	if f := c.read(); f.typ() != "GUILD_DELETE" {
		t.Fatalf("got %s", f.raw)
	}
	if _, ok := srv.World().Guild(g.ID); ok {
		t.Fatal("left guild still in the world")
	}
}

// TestGenerateWorldStopsWhenCancelled: a context that ends while the world
// is being built stops the building (MEGANE_DEMO_GUILDS=100000000 once
// ignored SIGTERM until the machine ran out of memory).
func TestGenerateWorldStopsWhenCancelled(t *testing.T) {
	ctx := testctx.NewPollLimited(20) // ends a few thousand objects in
	opts := WorldOptions{Guilds: 20_000}.withDefaults()
	done := make(chan error, 1)
	go func() {
		w, gen, err := generateWorld(ctx, opts, User{ID: 1})
		if w != nil || gen != nil {
			err = errors.Join(err, errors.New("a world was returned"))
		}
		done <- err
	}()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("generateWorld = %v, want context.Canceled", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("generateWorld still running 30 s after its context ended")
	}
}

func TestNewServerContextCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	srv, err := NewServerContext(ctx, Options{World: WorldOptions{Guilds: MaxGuilds}})
	if !errors.Is(err, context.Canceled) {
		if srv != nil {
			_ = srv.Close()
		}
		t.Fatalf("NewServerContext = %v, want context.Canceled", err)
	}
}

func TestWorldBounds(t *testing.T) {
	tests := []struct {
		name string
		opts WorldOptions
		want string
	}{
		{"guilds", WorldOptions{Guilds: MaxGuilds + 1}, "Guilds=1000001 is more than 1000000"},
		{"guilds overflow", WorldOptions{Guilds: math.MaxInt}, "Guilds="},
		{"channels", WorldOptions{Guilds: 1, ChannelsPerGuild: MaxChannelsPerGuild + 1}, "ChannelsPerGuild=501"},
		{"roles", WorldOptions{Guilds: 1, RolesPerGuild: MaxRolesPerGuild + 1}, "RolesPerGuild=251"},
		{"users", WorldOptions{Guilds: 1, Users: MaxUsers + 1}, "Users=1000001"},
		{"objects", WorldOptions{Guilds: MaxGuilds, ChannelsPerGuild: 100, Users: 1000}, "objects"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv, err := NewServer(Options{World: tt.opts})
			if srv != nil {
				_ = srv.Close()
			}
			if !errors.Is(err, ErrWorldTooLarge) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewServer = %v, want ErrWorldTooLarge mentioning %q", err, tt.want)
			}
		})
	}
	srv, err := NewServer(Options{World: WorldOptions{Guilds: 1, ChannelsPerGuild: MaxChannelsPerGuild, RolesPerGuild: MaxRolesPerGuild}})
	if err != nil {
		t.Fatalf("world at the bounds: %v", err)
	}
	_ = srv.Close()
}
