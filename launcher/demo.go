package launcher

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/disgoorg/snowflake/v2"

	"github.com/megane-go/megane/discordtest"
	"github.com/megane-go/megane/redisconn"
)

// demo holds what demo mode runs inside the launcher: the fake Discord when
// there is no token, the embedded Redis when there is no Redis.
type demo struct {
	fake  *discordtest.Server
	redis *redisconn.Embedded
	log   *slog.Logger
}

// startDemo starts what demo mode needs. ctx is the launcher's, which a
// signal cancels: building a big fake world takes seconds, and Ctrl-C must
// stop it.
func startDemo(ctx context.Context, cfg *Config, log *slog.Logger) (*demo, error) {
	d := &demo{log: log}
	if cfg.Token == "" {
		shards := cfg.Shards
		if shards == 0 {
			shards = DefaultDemoShards
		}
		if cfg.DemoGuilds > 10_000 {
			log.Info("demo: building the fake Discord world", slog.Int("guilds", cfg.DemoGuilds))
		}
		fake, err := discordtest.NewServerContext(ctx, discordtest.Options{
			Shards:         shards,
			MaxConcurrency: 16,
			World:          discordtest.WorldOptions{Guilds: cfg.DemoGuilds, Seed: 1},
		})
		if err != nil {
			return nil, fmt.Errorf("launcher: demo: start fake Discord: %w", err)
		}
		d.fake = fake
		cfg.Token, cfg.RESTURL, cfg.GatewayURL = fake.Token(), fake.RESTURL(), fake.GatewayURL()
		log.Warn("DISCORD_TOKEN is not set: DEMO MODE against the built-in fake Discord (set it to run your bot for real)",
			slog.String("fake_discord", fake.URL()))
	}
	if cfg.RedisURL == "" && cfg.Redis == nil {
		e, err := redisconn.StartEmbedded()
		if err != nil {
			d.close()
			return nil, fmt.Errorf("launcher: demo: %w", err)
		}
		d.redis = e
		cfg.RedisURL = e.URL()
		log.Warn("REDIS_URL is not set: using an embedded in-memory Redis; sessions and data are lost when the launcher stops",
			slog.String("redis", e.Addr()))
	}
	return d, nil
}

func (d *demo) close() {
	if d.fake != nil {
		_ = d.fake.Close()
	}
	if d.redis != nil {
		d.redis.Close()
	}
}

// announce tells a new user what runs and how to look inside.
func (d *demo) announce(l *Launcher) {
	var b strings.Builder
	b.WriteString("\n  Megane demo\n")
	if d.fake != nil {
		fmt.Fprintf(&b, "    fake Discord   %s  (%d guilds; GET %s/_fake/stats)\n", d.fake.URL(), len(d.fake.World().Guilds), d.fake.URL())
	}
	host, port := "127.0.0.1", ""
	if d.redis != nil {
		host, port, _ = strings.Cut(d.redis.Addr(), ":")
		fmt.Fprintf(&b, "    Redis          %s  (embedded)\n", d.redis.Addr())
	}
	fmt.Fprintf(&b, "    clusters       %d, shards %d, namespace %q\n", len(l.clusters), l.shardCount, l.cfg.Namespace)
	if port != "" {
		cli := "redis-cli -h " + host + " -p " + port
		fmt.Fprintf(&b, "  Look inside:\n")
		fmt.Fprintf(&b, "    %s HGETALL %s\n", cli, l.ks.ShardMap())
		fmt.Fprintf(&b, "    %s HGETALL %s\n", cli, l.ks.Cluster(0))
		fmt.Fprintf(&b, "    %s HGETALL %s\n", cli, l.ks.ShardSession(0))
		fmt.Fprintf(&b, "    %s XRANGE %s - +\n", cli, l.ks.Events())
		mc := "go run ./cmd/megane-cli -r redis://" + d.redis.Addr()
		fmt.Fprintf(&b, "    %s status        (or: stats, events -f, nodes)\n", mc)
		fmt.Fprintf(&b, "    %s eval 'sum(shard_statuses, .guilds)'\n", mc)
		fmt.Fprintf(&b, "    %s restart 0     (its shards RESUME)\n", mc)
	}
	if d.fake != nil && l.cfg.DemoPingInterval > 0 {
		fmt.Fprintf(&b, "  The fake sends \"!ping\" into a guild every %s; the bot answers over REST.\n", l.cfg.DemoPingInterval)
	}
	b.WriteString("  Stop with Ctrl-C: the clusters close their shards resumably and save the sessions to Redis.\n")
	fmt.Fprintln(os.Stderr, b.String())
}

// startPinger makes something visibly happen in demo mode: a user says
// "!ping" in a guild every DemoPingInterval, and the count of bot answers
// is logged. It returns the function that stops it.
func (d *demo) startPinger(ctx context.Context, l *Launcher) func() {
	if d.fake == nil || l.cfg.DemoPingInterval <= 0 {
		return func() {}
	}
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		select { // no pings before the bot can answer them
		case <-l.AllReady():
		case <-ctx.Done():
			return
		}
		t := time.NewTicker(l.cfg.DemoPingInterval)
		defer t.Stop()
		sent := 0
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			w := d.fake.World()
			if len(w.Guilds) == 0 {
				continue
			}
			g := w.Guilds[sent%len(w.Guilds)]
			payload, ok := userMessage(w, g, "!ping")
			if !ok {
				continue
			}
			before := len(d.fake.Messages())
			if _, err := d.fake.Dispatch(g.ID, "MESSAGE_CREATE", payload); err != nil {
				d.log.Warn("demo: dispatch !ping failed", slog.Any("error", err))
				continue
			}
			sent++
			wctx, wcancel := context.WithTimeout(ctx, l.cfg.DemoPingInterval)
			_ = d.fake.WaitFor(wctx, func(s *discordtest.Server) bool { return len(s.Messages()) > before })
			wcancel()
			msgs := d.fake.Messages()
			answer := "(no answer yet)"
			if len(msgs) > before {
				answer = msgs[len(msgs)-1].Content
			}
			d.log.Info("demo: a user said !ping", slog.String("guild", g.Name), slog.String("answer", answer),
				slog.Int("pings", sent), slog.Int("bot_answers", len(msgs)))
		}
	}()
	return func() { cancel(); <-done }
}

var messageSeq atomic.Uint64

// userMessage builds a MESSAGE_CREATE payload, as Discord sends it, of a
// member of g writing content in g's first text channel.
func userMessage(w *discordtest.World, g discordtest.Guild, content string) (map[string]any, bool) {
	var channel snowflake.ID
	for _, c := range g.Channels {
		if c.Type == discordtest.ChannelTypeText {
			channel = c.ID
			break
		}
	}
	if channel == 0 || len(g.Members) == 0 {
		return nil, false
	}
	n := messageSeq.Add(1)
	m := g.Members[int(n)%len(g.Members)]
	u, ok := w.User(m.UserID)
	if !ok {
		return nil, false
	}
	now := time.Now()
	id := snowflake.New(now) + snowflake.ID(n%4096)
	roles := make([]string, 0, len(m.Roles))
	for _, r := range m.Roles {
		roles = append(roles, r.String())
	}
	return map[string]any{
		"id":         id.String(),
		"channel_id": channel.String(),
		"guild_id":   g.ID.String(),
		"author": map[string]any{
			"id": u.ID.String(), "username": u.Username, "discriminator": "0",
			"global_name": nil, "avatar": nil,
		},
		"member": map[string]any{
			"roles": roles, "joined_at": m.JoinedAt.UTC().Format(time.RFC3339Nano),
			"deaf": false, "mute": false, "flags": 0,
		},
		"content":          content,
		"timestamp":        now.UTC().Format(time.RFC3339Nano),
		"edited_timestamp": nil,
		"tts":              false,
		"mention_everyone": false,
		"mentions":         []any{},
		"mention_roles":    []any{},
		"attachments":      []any{},
		"embeds":           []any{},
		"pinned":           false,
		"type":             0,
	}, true
}
