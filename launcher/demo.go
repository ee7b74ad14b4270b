package launcher

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/disgoorg/disgo/gateway"
	"github.com/disgoorg/snowflake/v2"

	"github.com/megane-go/megane/cluster"
	"github.com/megane-go/megane/discordtest"
	"github.com/megane-go/megane/redisconn/embedded"
)

// demo holds what demo mode runs inside the launcher: the fake Discord when
// there is no token, the embedded Redis when there is no Redis.
type demo struct {
	fake  *discordtest.Server
	redis *embedded.Server
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
		e, err := embedded.Start()
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
	if l.monitorURL != "" {
		fmt.Fprintf(&b, "    status page    %s  (metrics: %smetrics)\n", l.monitorURL, l.monitorURL)
	}
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
	if d.fake != nil {
		if l.cfg.DemoPingInterval > 0 {
			fmt.Fprintf(&b, "  The fake sends \"!ping\" into a guild every %s; the bot answers over REST.\n", l.cfg.DemoPingInterval)
		}
		fmt.Fprintf(&b, "  Say something as a user (optional: \"guild_id\", \"channel_id\", \"author_id\"; \"<@%s>\" mentions the bot):\n", d.fake.AppID())
		fmt.Fprintf(&b, "    curl -d '{\"content\":\"!ping\"}' %s/_fake/message\n", d.fake.URL())
		fmt.Fprintf(&b, "    curl %s/_fake/messages   (what the bot posted)\n", d.fake.URL())
	}
	b.WriteString("  Stop with Ctrl-C: the clusters close their shards resumably and save the sessions to Redis.\n")
	fmt.Fprintln(os.Stderr, b.String())
}

// startPinger makes something visibly happen in demo mode: a user says
// "!ping" in a guild every DemoPingInterval, and the bot's answer is logged.
// It returns the function that stops it.
func (d *demo) startPinger(ctx context.Context, l *Launcher) func() {
	if d.fake == nil || l.cfg.DemoPingInterval <= 0 {
		return func() {}
	}
	intents := l.cfg.Intents
	if intents == 0 {
		intents = cluster.DefaultIntents
	}
	p := &pinger{fake: d.fake, log: d.log, wait: l.cfg.DemoPingInterval, intents: intents}
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
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
			p.ping(ctx)
		}
	}()
	return func() { cancel(); <-done }
}

// demoUnansweredWarn is how many pings in a row go unanswered before the demo
// looks for the reason.
const demoUnansweredWarn = 3

// pinger sends the demo's "!ping" messages and pairs each with its answer.
type pinger struct {
	fake *discordtest.Server
	log  *slog.Logger
	// wait is how long a ping waits for its answer.
	wait time.Duration
	// intents are the ones the bot's shards identify with.
	intents gateway.Intents

	sent       int
	unanswered int // in a row
	warned     bool
}

// ping has a member of the next guild say "!ping" in its first text channel,
// waits for the answer and logs it.
func (p *pinger) ping(ctx context.Context) {
	w := p.fake.World()
	if len(w.Guilds) == 0 {
		return
	}
	g := w.Guilds[p.sent%len(w.Guilds)]
	before := len(p.fake.Messages())
	ping, err := p.fake.SendMessage(discordtest.UserMessage{GuildID: g.ID, AuthorID: demoAuthor(g, p.sent, p.fake.AppID()), Content: "!ping"})
	if err != nil {
		p.log.Warn("demo: dispatch !ping failed", slog.Any("error", err))
		return
	}
	p.sent++
	var (
		answer discordtest.PostedMessage
		found  bool
	)
	wctx, cancel := context.WithTimeout(ctx, p.wait)
	_ = p.fake.WaitFor(wctx, func(s *discordtest.Server) bool {
		msgs := s.Messages()
		answer, found = answerTo(msgs[min(before, len(msgs)):], ping)
		return found
	})
	cancel()
	text := "(no answer yet)"
	if found {
		text = answer.Content
		p.unanswered = 0
	} else {
		p.unanswered++
	}
	p.log.Info("demo: a user said !ping", slog.String("guild", g.Name), slog.String("answer", text),
		slog.Int("pings", p.sent), slog.Int("bot_answers", len(p.fake.Messages())))
	if p.unanswered >= demoUnansweredWarn && !p.warned && p.intents&gateway.IntentMessageContent == 0 {
		p.warned = true
		p.log.Warn("demo: the bot asked for no MESSAGE_CONTENT intent: on Discord it receives empty content for guild messages "+
			"that do not mention it, and so does the fake; add gateway.IntentMessageContent to launcher.Config.Intents "+
			"(and enable it for the application in the Developer Portal)",
			slog.Int("unanswered_pings", p.unanswered), slog.Int("intents", int(p.intents)))
	}
}

// answerTo finds the bot's answer to ping among msgs (posted after it): the
// reply that references it, or else the first message in its channel that
// replies to nothing. A bot that answers an older ping again (a replay after a
// restart) answers in that ping's channel, or references it, so it is not
// taken for this one's answer.
func answerTo(msgs []discordtest.PostedMessage, ping discordtest.SentMessage) (discordtest.PostedMessage, bool) {
	for _, m := range msgs {
		if m.ReplyTo == ping.ID {
			return m, true
		}
	}
	for _, m := range msgs {
		if m.ReplyTo == 0 && m.ChannelID == ping.ChannelID {
			return m, true
		}
	}
	return discordtest.PostedMessage{}, false
}

// demoAuthor picks the n-th human member of g (round robin), zero when there
// is none.
func demoAuthor(g discordtest.Guild, n int, bot snowflake.ID) snowflake.ID {
	var humans []snowflake.ID
	for _, m := range g.Members {
		if m.UserID != bot {
			humans = append(humans, m.UserID)
		}
	}
	if len(humans) == 0 {
		return 0
	}
	return humans[n%len(humans)]
}
