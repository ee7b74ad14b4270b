package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/disgoorg/snowflake/v2"
	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/cache"
	"github.com/megane-go/megane/discordtest"
	"github.com/megane-go/megane/internal/testredis"
	"github.com/megane-go/megane/internal/testwait"
	"github.com/megane-go/megane/keyspace"
	"github.com/megane-go/megane/redisipc"
	"github.com/megane-go/megane/services"
	"github.com/megane-go/megane/sessions"
	"github.com/megane-go/megane/stats"
)

const (
	shardCount = 8
	guildCount = 400
)

// bot is the system under test: the fake Discord, Redis, two cluster
// processes (shards 0-3 and 4-7), one service copy, and an IPC node of the
// test's own.
type bot struct {
	t        *testing.T
	rdb      redis.UniversalClient
	ks       keyspace.Keyspace
	url      string
	srv      *discordtest.Server
	clusters [2]*proc
	service  *proc
	node     *redisipc.Node
}

var clusterShards = [2]string{"0,1,2,3", "4,5,6,7"}

func (b *bot) env(role string) []string {
	return []string{
		"E2E_ROLE=" + role,
		"E2E_REDIS_URL=" + b.url,
		"E2E_NAMESPACE=" + b.ks.Namespace(),
		"E2E_TOKEN=" + b.srv.Token(),
		"E2E_REST_URL=" + b.srv.RESTURL(),
		"E2E_SHARD_COUNT=" + strconv.Itoa(shardCount),
		"E2E_MAX_CONCURRENCY=" + strconv.Itoa(shardCount),
		// A killed process's IPC registration lapses quickly.
		"E2E_IPC_TTL_MS=1500",
		"E2E_STATS_MS=300",
	}
}

func (b *bot) startCluster(id int) *proc {
	name := "cluster" + strconv.Itoa(id)
	if b.clusters[id] != nil {
		name += "-again"
	}
	p := startProc(b.t, name, append(b.env("cluster"),
		"E2E_CLUSTER_ID="+strconv.Itoa(id), "E2E_SHARDS="+clusterShards[id])...)
	b.clusters[id] = p
	return p
}

// projected reports whether every shard holds its guilds and none is still
// waiting for its GUILD_CREATE: the cheap condition before a full check.
func (b *bot) projected(ctx context.Context, w *discordtest.World) []string {
	var problems []string
	for s := range shardCount {
		want := len(w.GuildsOfShard(s, shardCount))
		n, err := b.rdb.SCard(ctx, b.ks.ShardGuilds(s)).Result()
		u, err2 := b.rdb.SCard(ctx, b.ks.ShardUnavailable(s)).Result()
		if err != nil || err2 != nil || n != int64(want) || u != 0 {
			problems = append(problems, "shard "+strconv.Itoa(s)+": "+strconv.FormatInt(n, 10)+" guilds, "+
				strconv.FormatInt(u, 10)+" unavailable, want "+strconv.Itoa(want)+" and 0")
		}
	}
	return problems
}

// ownerFetches reads the owner_fetches counter of a cluster from its
// "$stats" answer.
func (b *bot) ownerFetches(ctx context.Context, id int) int64 {
	b.t.Helper()
	st, err := b.node.StatsOf(ctx, redisipc.ClusterAddr(id))
	if err != nil || st.Cluster == nil || st.Cluster.ID != id {
		b.t.Fatalf("$stats of cluster %d: %+v, %v", id, st, err)
	}
	return st.Cluster.OwnerFetches
}

func restCount(srv *discordtest.Server, route string) int64 {
	var n int64
	for _, c := range srv.Stats().REST[route] {
		n += c
	}
	return n
}

// TestCacheEndToEnd runs the cache projection, cross-cluster fetch and eval
// with real processes: two clusters of four shards over 400 guilds, and a
// service that fetches through them.
func TestCacheEndToEnd(t *testing.T) { testredis.EachBackend(t, testCacheEndToEnd) }

func testCacheEndToEnd(t *testing.T) {
	rdb, ks := testredis.Real(t)
	b := &bot{t: t, rdb: rdb, ks: ks, url: testredis.URL(t)}
	srv, err := discordtest.NewServer(discordtest.Options{
		Shards: shardCount, MaxConcurrency: shardCount, IdentifyWindow: 100 * time.Millisecond,
		HeartbeatInterval: time.Second, World: discordtest.WorldOptions{Seed: 7, Guilds: guildCount},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	b.srv = srv
	ctx := context.Background()

	start := time.Now()
	b.startCluster(0)
	b.startCluster(1)
	b.service = startProc(t, "service", b.env("service")...)
	for _, p := range append(b.clusters[:], b.service) {
		p.waitReady(60 * time.Second)
	}
	node, err := redisipc.New(ctx, redisipc.Options{Redis: rdb, Keys: ks, Addr: "cli:e2e"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = node.Close(context.Background()) })
	b.node = node

	world := srv.World()
	testwait.Problems(t, 30*time.Second, "initial projection", func() []string { return b.projected(ctx, world) })
	t.Logf("ready and projected %d guilds in %s", guildCount, time.Since(start).Round(time.Millisecond))

	t.Run("layout", func(t *testing.T) {
		if p := checkProjection(ctx, rdb, ks, world, shardCount, checkOptions{memberCount: true}); len(p) > 0 {
			t.Fatalf("projection differs from the world:\n  %s", strings.Join(p, "\n  "))
		}
	})
	t.Run("eval", func(t *testing.T) { b.testEval(ctx, t, world) })
	t.Run("stats", func(t *testing.T) { b.testStats(ctx, t, world) })
	t.Run("fetch", func(t *testing.T) { b.testFetch(ctx, t, world) })
	t.Run("updates", func(t *testing.T) { b.testUpdates(ctx, t) })
	t.Run("reidentify", func(t *testing.T) { b.testReidentify(ctx, t) })

	for _, p := range append(b.clusters[:], b.service) {
		p.stop(20 * time.Second)
	}
	nodes, err := redisipc.LiveNodes(ctx, rdb, ks)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if n.Kind != redisipc.KindCLI && time.Until(n.Expires) > 0 && n.PID != 0 {
			// A killed cluster's registration may still be live; a stopped
			// one must have removed its own.
			for _, p := range append(b.clusters[:], b.service) {
				if p.Pid() == n.PID {
					t.Errorf("node %s (%s) of a stopped process is still registered", n.Addr, n.Instance)
				}
			}
		}
	}
}

// guildsOf returns the world's guilds on a cluster's shards.
func guildsOf(w *discordtest.World, cluster int) []*discordtest.Guild {
	var out []*discordtest.Guild
	for s := cluster * 4; s < cluster*4+4; s++ {
		out = append(out, w.GuildsOfShard(s, shardCount)...)
	}
	return out
}

func (b *bot) testEval(ctx context.Context, t *testing.T, w *discordtest.World) {
	g, err := b.node.Eval(ctx, redisipc.TargetClusters, `{
		"cluster": cluster, "shards": shards, "shard_count": shard_count, "guilds": guilds,
		"channels": channels, "roles": roles, "members": members, "users": users,
		"statuses": map(shard_statuses, .status), "ready": ready, "marker": e2e_marker,
		"rss": memory.rss_bytes, "uptime": uptime, "total": total_counts().guilds}`)
	if err != nil {
		t.Fatal(err)
	}
	if len(g.Answers) != 2 || len(g.Missing) != 0 {
		t.Fatalf("%d answers, missing %v; want 2 and none", len(g.Answers), g.Missing)
	}
	for i, a := range g.Answers {
		var got struct {
			Cluster    int      `json:"cluster"`
			Shards     []int    `json:"shards"`
			ShardCount int      `json:"shard_count"`
			Guilds     int      `json:"guilds"`
			Channels   int      `json:"channels"`
			Roles      int      `json:"roles"`
			Members    int      `json:"members"`
			Users      int      `json:"users"`
			Statuses   []string `json:"statuses"`
			Ready      bool     `json:"ready"`
			Marker     string   `json:"marker"`
			RSS        int64    `json:"rss"`
			Uptime     float64  `json:"uptime"`
			Total      int      `json:"total"`
		}
		if err := a.Decode(&got); err != nil {
			t.Fatalf("answer of %s: %v", a.From, err)
		}
		if a.From != redisipc.ClusterAddr(i) || got.Cluster != i {
			t.Fatalf("answer %d from %s says cluster %d", i, a.From, got.Cluster)
		}
		var guilds, channels, roles, members int
		for _, gu := range guildsOf(w, i) {
			guilds++
			channels += len(gu.Channels)
			roles += len(gu.Roles)
			members += len(gu.Members)
		}
		wantShards := []int{4 * i, 4*i + 1, 4*i + 2, 4*i + 3}
		if got.Guilds != guilds || got.Channels != channels || got.Roles != roles || got.Members != members || got.Users != members {
			t.Errorf("cluster %d counts guilds %d channels %d roles %d members %d users %d; world has %d %d %d %d (users = members per cluster)",
				i, got.Guilds, got.Channels, got.Roles, got.Members, got.Users, guilds, channels, roles, members)
		}
		if !slices.Equal(got.Shards, wantShards) || got.ShardCount != shardCount || !got.Ready ||
			!slices.Equal(got.Statuses, []string{"ready", "ready", "ready", "ready"}) {
			t.Errorf("cluster %d: shards %v of %d, ready %v, statuses %v", i, got.Shards, got.ShardCount, got.Ready, got.Statuses)
		}
		if got.Marker != "cluster-"+strconv.Itoa(i) || got.RSS <= 0 || got.Uptime <= 0 || got.Total != guildCount {
			t.Errorf("cluster %d: marker %q rss %d uptime %v total %d", i, got.Marker, got.RSS, got.Uptime, got.Total)
		}
	}
	if g.Answers[0].Payload != nil && len(g.Answers) == 2 {
		t.Logf("eval answers: %s | %s", trim(g.Answers[0].Payload), trim(g.Answers[1].Payload))
	}
}

func trim(b []byte) string {
	if len(b) > 200 {
		return string(b[:200]) + "…"
	}
	return string(b)
}

func (b *bot) testStats(ctx context.Context, t *testing.T, w *discordtest.World) {
	for i := range 2 {
		want := int64(len(guildsOf(w, i)))
		name := redisipc.ClusterAddr(i)
		testwait.Problems(t, 10*time.Second, "stats of cluster "+strconv.Itoa(i), func() []string {
			st, err := stats.Read(ctx, b.rdb, b.ks, name)
			f := st.Fields
			if err != nil || f["guilds"] != want || f["shards"] != int64(4) || f["shards_ready"] != int64(4) ||
				f["e2e_marker"] != "cluster-"+strconv.Itoa(i) || f["rss_bytes"] == nil || f["latency_ms"] == nil {
				return []string{fmt.Sprintf("stats of %s: %v %s", name, err, fmtMap(f))}
			}
			return nil
		})
	}
	testwait.Problems(t, 10*time.Second, "stats of the service", func() []string {
		if st, err := stats.Read(ctx, b.rdb, b.ks, "service:e2e:0"); err != nil || st.Fields["pid"] == nil {
			return []string{fmt.Sprintf("stats of service:e2e:0: %v %s", err, fmtMap(st.Fields))}
		}
		return nil
	})
}

func fmtMap(m map[string]any) string {
	b, _ := json.Marshal(m)
	return string(b)
}

// textChannel returns a text channel of g, with a topic.
func textChannel(t *testing.T, g *discordtest.Guild) discordtest.Channel {
	t.Helper()
	for _, ch := range g.Channels {
		if ch.Type == discordtest.ChannelTypeText && ch.Topic != "" {
			return ch
		}
	}
	t.Fatalf("guild %s has no text channel with a topic", g.ID)
	return discordtest.Channel{}
}

func humanMember(g *discordtest.Guild, bot snowflake.ID) snowflake.ID {
	for _, m := range g.Members {
		if m.UserID != bot {
			return m.UserID
		}
	}
	return 0
}

func (b *bot) testFetch(ctx context.Context, t *testing.T, w *discordtest.World) {
	g0 := w.GuildsOfShard(1, shardCount)[0] // cluster 0
	g1 := w.GuildsOfShard(6, shardCount)[0] // cluster 1
	ch1 := textChannel(t, g1)
	u1 := humanMember(g1, w.Bot.ID)
	user, _ := w.User(u1)

	for _, tc := range []struct {
		guild snowflake.ID
		want  string
	}{{g0.ID, "cluster:0"}, {g1.ID, "cluster:1"}} {
		var owner string
		if err := services.Call(ctx, b.node, "e2e", "owner", map[string]string{"guild": sf(tc.guild)}, &owner); err != nil {
			t.Fatal(err)
		}
		if owner != tc.want {
			t.Errorf("owner of %s = %q, want %q", tc.guild, owner, tc.want)
		}
	}

	before0, before1 := b.ownerFetches(ctx, 0), b.ownerFetches(ctx, 1)

	// Guild, channel and user of different clusters, all from the projection.
	var typed struct {
		Guild   cache.Guild   `json:"guild"`
		Channel cache.Channel `json:"channel"`
		User    cache.User    `json:"user"`
	}
	in := map[string]string{"guild": sf(g0.ID), "channel": sf(ch1.ID), "user": sf(u1)}
	if err := services.Call(ctx, b.node, "e2e", "typed", in, &typed); err != nil {
		t.Fatal(err)
	}
	if typed.Guild.ID != uint64(g0.ID) || typed.Guild.Name != g0.Name || typed.Guild.Shard != 1 || typed.Guild.OwnerID != uint64(g0.OwnerID) {
		t.Errorf("FetchGuild = %+v, want %s %q on shard 1", typed.Guild, g0.ID, g0.Name)
	}
	if typed.Channel.ID != uint64(ch1.ID) || typed.Channel.GuildID != uint64(g1.ID) || typed.Channel.Name != ch1.Name {
		t.Errorf("FetchChannel = %+v, want %s %q of %s", typed.Channel, ch1.ID, ch1.Name, g1.ID)
	}
	if typed.User.ID != uint64(u1) || typed.User.Username != user.Username || typed.User.GlobalName != user.GlobalName {
		t.Errorf("FetchUser = %+v, want %+v", typed.User, user)
	}
	if a, c := b.ownerFetches(ctx, 0), b.ownerFetches(ctx, 1); a != before0 || c != before1 {
		t.Errorf("the projection could answer, yet the owners were asked (%d→%d, %d→%d)", before0, a, before1, c)
	}

	// The projection does not keep channel topics: the owner of the
	// channel's guild (cluster 1) answers, from Discord's REST API.
	restBefore := restCount(b.srv, "GET /channels/{id}")
	var got map[string]map[string]string
	in2 := map[string]any{"kind": cache.EntityChannel, "ids": []string{sf(ch1.ID)}, "fields": []string{"topic"}}
	if err := services.Call(ctx, b.node, "e2e", "fetch", in2, &got); err != nil {
		t.Fatal(err)
	}
	if f := got[sf(ch1.ID)]; f["topic"] != ch1.Topic || f["name"] != ch1.Name || f["guild_id"] != sf(g1.ID) {
		t.Errorf("fetch with topic = %v, want topic %q", f, ch1.Topic)
	}
	if a, c := b.ownerFetches(ctx, 0), b.ownerFetches(ctx, 1); a != before0 || c != before1+1 {
		t.Errorf("owner fetches after a topic fetch: cluster 0 %d→%d, cluster 1 %d→%d; want only cluster 1 asked, once",
			before0, a, before1, c)
	}
	if n := restCount(b.srv, "GET /channels/{id}"); n != restBefore+1 {
		t.Errorf("GET /channels/{id} went %d→%d, want one call by the owner", restBefore, n)
	}
	b.testFetchSources(ctx, t, *g0, *g1)

	// A kind only the owner knows (registered on cluster.Cluster.Owners).
	in3 := map[string]any{"kind": "guild_owner", "guild": sf(g0.ID), "ids": []string{sf(g0.ID)}}
	if err := services.Call(ctx, b.node, "e2e", "fetch", in3, &got); err != nil {
		t.Fatal(err)
	}
	if f := got[sf(g0.ID)]; f["cluster"] != "0" || f["shard_id"] != "1" || f["name"] != g0.Name {
		t.Errorf("guild_owner = %v, want cluster 0, shard 1, name %q", f, g0.Name)
	}
	if a := b.ownerFetches(ctx, 0); a != before0+1 {
		t.Errorf("cluster 0 owner fetches %d→%d, want one more", before0, a)
	}
}

func (b *bot) dispatch(t *testing.T, guild snowflake.ID, typ string, payload any) discordtest.Dispatched {
	t.Helper()
	d, err := b.srv.Dispatch(guild, typ, payload)
	if err != nil {
		t.Fatalf("dispatch %s: %v", typ, err)
	}
	return d
}

func userObj(u discordtest.User) map[string]any {
	// As Discord sends it: "bot" only for bots.
	o := map[string]any{"id": sf(u.ID), "username": u.Username, "discriminator": "0"}
	if u.Bot {
		o["bot"] = true
	}
	if u.GlobalName != "" {
		o["global_name"] = u.GlobalName
	}
	return o
}

func (b *bot) testUpdates(ctx context.Context, t *testing.T) {
	w := b.srv.World()
	ga := w.GuildsOfShard(2, shardCount)[1] // cluster 0
	gb := w.GuildsOfShard(5, shardCount)[1] // cluster 1
	gl := w.GuildsOfShard(3, shardCount)[2] // cluster 0, left below

	// GUILD_UPDATE: a rename.
	b.dispatch(t, ga.ID, "GUILD_UPDATE", map[string]any{"id": sf(ga.ID), "name": "Renamed " + ga.Name, "owner_id": sf(ga.OwnerID)})

	// CHANNEL_CREATE and CHANNEL_DELETE.
	var category, voice discordtest.Channel
	for _, ch := range gb.Channels {
		switch ch.Type {
		case discordtest.ChannelTypeCategory:
			category = ch
		case discordtest.ChannelTypeVoice:
			voice = ch
		}
	}
	if voice.ID == 0 || category.ID == 0 {
		t.Fatalf("guild %s has no voice channel or category", gb.ID)
	}
	newCh := b.srv.NewID()
	b.dispatch(t, gb.ID, "CHANNEL_CREATE", map[string]any{
		"id": sf(newCh), "type": discordtest.ChannelTypeText, "guild_id": sf(gb.ID), "name": "brand-new", "position": 9,
		"parent_id": sf(category.ID), "topic": "new things", "nsfw": false, "rate_limit_per_user": 0,
		"permission_overwrites": []any{},
	})
	b.dispatch(t, gb.ID, "CHANNEL_DELETE", map[string]any{
		"id": sf(voice.ID), "type": discordtest.ChannelTypeVoice, "guild_id": sf(gb.ID), "name": voice.Name,
		"position": voice.Position, "parent_id": sf(category.ID), "bitrate": 64000, "user_limit": 0,
		"rate_limit_per_user": 0, "permission_overwrites": []any{},
	})

	// GUILD_MEMBER_ADD: a user new to the bot, and a known user joining
	// another guild. GUILD_MEMBER_REMOVE: a member leaving.
	newbie := discordtest.User{ID: b.srv.NewID(), Username: "newbie", GlobalName: "Newbie"}
	joined := time.Now().UTC().Truncate(time.Second).Format(time.RFC3339)
	member := func(g snowflake.ID, u discordtest.User) map[string]any {
		return map[string]any{"guild_id": sf(g), "user": userObj(u), "roles": []any{}, "joined_at": joined,
			"deaf": false, "mute": false, "flags": 0}
	}
	b.dispatch(t, ga.ID, "GUILD_MEMBER_ADD", member(ga.ID, newbie))
	var joiner discordtest.User
	for _, u := range w.Users {
		if _, in := w.Member(gb.ID, u.ID); !in {
			joiner = u
			break
		}
	}
	b.dispatch(t, gb.ID, "GUILD_MEMBER_ADD", member(gb.ID, joiner))
	leaver, _ := w.User(humanMember(gb, w.Bot.ID))
	b.dispatch(t, gb.ID, "GUILD_MEMBER_REMOVE", map[string]any{"guild_id": sf(gb.ID), "user": userObj(*leaver)})

	// GUILD_ROLE_UPDATE.
	role := gb.Roles[1]
	b.dispatch(t, gb.ID, "GUILD_ROLE_UPDATE", map[string]any{"guild_id": sf(gb.ID), "role": map[string]any{
		"id": sf(role.ID), "name": "renamed-role", "color": 0x123456, "hoist": !role.Hoist, "position": role.Position,
		"permissions": strconv.FormatUint(role.Permissions, 10), "managed": false, "mentionable": role.Mentionable, "flags": 0,
	}})

	// GUILD_DELETE by leaving a guild.
	if d, err := b.srv.LeaveGuild(gl.ID); err != nil || !d.Attached {
		t.Fatalf("LeaveGuild: %+v, %v", d, err)
	}

	after := b.srv.World()
	if _, ok := after.Guild(gl.ID); ok {
		t.Fatal("the fake still has the guild that was left")
	}
	testwait.Problems(t, 15*time.Second, "updates projected", func() []string {
		p := checkProjection(ctx, b.rdb, b.ks, after, shardCount, checkOptions{})
		p = append(p, goneGuild(ctx, b.rdb, b.ks, *gl)...)
		c := newChecker(ctx, b.rdb)
		c.absentKey(b.ks.Channel(uint64(voice.ID)))
		c.absentKey(b.ks.Member(uint64(gb.ID), uint64(leaver.ID)))
		return append(p, c.run()...)
	})
	// Spot checks of what the world comparison implies.
	if n := b.rdb.HGet(ctx, b.ks.Guild(uint64(ga.ID)), "name").Val(); n != "Renamed "+ga.Name {
		t.Errorf("renamed guild is %q", n)
	}
	if f := b.rdb.HGetAll(ctx, b.ks.Channel(uint64(newCh))).Val(); f["name"] != "brand-new" || f["guild_id"] != sf(gb.ID) {
		t.Errorf("new channel hash %v", f)
	}
	if g := b.rdb.SMembers(ctx, b.ks.UserGuilds(uint64(newbie.ID))).Val(); !sameSet(g, []string{sf(ga.ID)}) {
		t.Errorf("the new member's guilds are %v", g)
	}
	if f := b.rdb.HGetAll(ctx, b.ks.Role(uint64(role.ID))).Val(); f["name"] != "renamed-role" || f["color"] != strconv.Itoa(0x123456) {
		t.Errorf("updated role hash %v", f)
	}
	if k := keysMentioning(ctx, b.rdb, b.ks, gl.ID); len(k) > 0 {
		t.Errorf("keys of the guild that was left remain: %v", k)
	}
}

// testReidentify kills cluster 1 and deletes its sessions, so its next start
// must IDENTIFY. While it is down a guild of its shard 5 is left: the
// GUILD_DELETE goes to the detached session, which the new IDENTIFY
// supersedes, so the restarted cluster never sees it. Its READY must purge
// the guild nonetheless.
func (b *bot) testReidentify(ctx context.Context, t *testing.T) {
	w := b.srv.World()
	gone := w.GuildsOfShard(5, shardCount)[3]

	b.clusters[1].kill()
	// The fake notices the dropped connections on its own schedule.
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := b.srv.WaitFor(wctx, func(srv *discordtest.Server) bool {
		for s := 4; s < 8; s++ {
			if st, _ := srv.ShardStatus(s); st.Connected {
				return false
			}
		}
		return true
	}); err != nil {
		t.Fatalf("the fake still sees cluster 1's shards connected: %v", err)
	}
	for s := 4; s < 8; s++ {
		if err := sessions.Delete(ctx, b.rdb, b.ks, s); err != nil {
			t.Fatal(err)
		}
	}
	d, err := b.srv.LeaveGuild(gone.ID)
	if err != nil || d.Attached || d.Shard != 5 {
		t.Fatalf("LeaveGuild while the cluster is down: %+v, %v; want a detached shard 5 session", d, err)
	}
	if n := b.rdb.Exists(ctx, b.ks.Guild(uint64(gone.ID))).Val(); n != 1 {
		t.Fatal("the guild's keys went away before the cluster came back; the test proves nothing")
	}
	identifies := len(b.srv.Identifies())

	restart := time.Now()
	p := b.startCluster(1)
	p.waitReady(30 * time.Second)
	ids := b.srv.Identifies()[identifies:]
	var shards []int
	for _, id := range ids {
		shards = append(shards, id.Shard)
	}
	slices.Sort(shards)
	if !slices.Equal(shards, []int{4, 5, 6, 7}) {
		t.Fatalf("restart identified shards %v, want 4-7", shards)
	}

	after := b.srv.World()
	testwait.Problems(t, 15*time.Second, "projection after the re-identify", func() []string {
		if p := b.projected(ctx, after); len(p) > 0 {
			return p
		}
		p := checkProjection(ctx, b.rdb, b.ks, after, shardCount, checkOptions{})
		return append(p, goneGuild(ctx, b.rdb, b.ks, *gone)...)
	})
	if k := keysMentioning(ctx, b.rdb, b.ks, gone.ID); len(k) > 0 {
		t.Errorf("keys of the guild left while the cluster was down remain: %v", k)
	}
	t.Logf("re-identified and purged in %s", time.Since(restart).Round(time.Millisecond))

	// Once the killed process's registration lapsed, eval sees the new one.
	testwait.Problems(t, 10*time.Second, "one live instance of cluster:1", func() []string {
		nodes, err := redisipc.LiveNodes(ctx, b.rdb, b.ks)
		if err != nil {
			return []string{err.Error()}
		}
		n := 0
		for _, x := range nodes {
			if x.Addr == redisipc.ClusterAddr(1) {
				n++
			}
		}
		if n != 1 {
			return []string{strconv.Itoa(n) + " live instances"}
		}
		return nil
	})
	g, err := b.node.Eval(ctx, redisipc.TargetClusters, "guilds")
	if err != nil || len(g.Answers) != 2 {
		t.Fatalf("eval after restart: %v, %+v", err, g)
	}
	total := 0
	for _, a := range g.Answers {
		var n int
		if err := a.Decode(&n); err != nil {
			t.Fatal(err)
		}
		total += n
	}
	if total != len(after.Guilds) {
		t.Errorf("clusters count %d guilds, the world has %d", total, len(after.Guilds))
	}
}

// ownerStats reads a cluster's owner counters from its "$stats" answer.
func (b *bot) ownerStats(ctx context.Context, id int) (fetches, rest, cached int64) {
	b.t.Helper()
	st, err := b.node.StatsOf(ctx, redisipc.ClusterAddr(id))
	if err != nil || st.Cluster == nil {
		b.t.Fatalf("$stats of cluster %d: %+v, %v", id, st, err)
	}
	return st.Cluster.OwnerFetches, st.Cluster.OwnerREST, st.Cluster.OwnerRESTCached
}

// testFetchSources fetches a guild field the projection does not keep
// twelve times from another process: the owning cluster calls REST once and
// answers the rest from its REST cache, every answer says where it came
// from, and the owner's statistics count both.
func (b *bot) testFetchSources(ctx context.Context, t *testing.T, inProjection, remote discordtest.Guild) {
	t.Helper()
	type reply struct {
		Items   map[string]map[string]string `json:"items"`
		Sources map[string]cache.Source      `json:"sources"`
	}
	fetch := func(g discordtest.Guild, fields ...string) reply {
		t.Helper()
		in := map[string]any{"kind": cache.EntityGuild, "ids": []string{sf(g.ID)}, "fields": fields, "sources": true}
		var r reply
		if err := services.Call(ctx, b.node, "e2e", "fetch", in, &r); err != nil {
			t.Fatal(err)
		}
		if f := r.Items[sf(g.ID)]; f["name"] != g.Name {
			t.Fatalf("fetch of guild %s = %v, want name %q", g.ID, f, g.Name)
		}
		return r
	}
	if r := fetch(inProjection); r.Sources[sf(inProjection.ID)] != cache.SourceProjection {
		t.Errorf("a projected guild came from %q, want %q", r.Sources[sf(inProjection.ID)], cache.SourceProjection)
	}

	owner := 1 // remote's cluster
	route := "GET /guilds/{id}"
	restBefore := restCount(b.srv, route)
	fetchesBefore, restCalls, cachedBefore := b.ownerStats(ctx, owner)
	for i := range 12 {
		r := fetch(remote, "description") // a field the projection does not keep
		want := cache.SourceOwnerCache
		if i == 0 {
			want = cache.SourceOwnerREST
		}
		if got := r.Sources[sf(remote.ID)]; got != want {
			t.Errorf("fetch %d came from %q, want %q", i+1, got, want)
		}
	}
	if n := restCount(b.srv, route); n != restBefore+1 {
		t.Errorf("12 fetches of one guild made %d %s calls, want 1 (the owner's REST cache answers the rest)", n-restBefore, route)
	}
	fetches, rest, cached := b.ownerStats(ctx, owner)
	if fetches != fetchesBefore+12 || rest != restCalls+1 || cached != cachedBefore+11 {
		t.Errorf("owner stats: fetches +%d, rest +%d, cached +%d; want +12, +1, +11",
			fetches-fetchesBefore, rest-restCalls, cached-cachedBefore)
	}
	t.Logf("12 fetches of guild %s's description: %d REST call(s); owner stats owner_rest=%d owner_rest_cached=%d",
		remote.ID, restCount(b.srv, route)-restBefore, rest, cached)
}
