package redisipc

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
)

// Options configures a Node. Redis, Keys and Addr are required.
type Options struct {
	// Redis is the shared client. Single node, Sentinel and Cluster all work.
	Redis redis.UniversalClient
	// Keys is the namespace's key schema.
	Keys keyspace.Keyspace
	// Addr is the node's address: "launcher", "cluster:<id>",
	// "service:<name>" or "cli:<id>", made of the characters
	// keyspace.CheckName allows. A "cli:<id>" address belongs to one
	// short-lived process: its inbox is deleted on Close. Other inboxes
	// are left for the next process at the address, and expire
	// 3 × HeartbeatTTL (at least a minute) after their last node stopped.
	Addr string
	// Instance identifies this process. It must be unique among live nodes
	// and pass keyspace.CheckName; the default is the address kind plus 12
	// random hex digits. Its reply stream lives as long as the node (TTL
	// refreshed by the heartbeat) and is deleted on Close.
	Instance string
	// Group reads the inbox through the consumer group, so several copies of
	// one address (service copies) share the load and a dead copy's pending
	// requests are reclaimed by a live one. Without it the node reads its
	// inbox alone with XREAD.
	Group bool
	// Hold defers serving the inbox and advertising the address until Start
	// is called, so a service can finish launching before it gets requests.
	// Calls, sends and gathers from the node work meanwhile.
	Hold bool
	// MaxPayload bounds request and reply payloads in bytes. Larger payloads
	// are refused at the sender with ErrPayloadTooLarge. Default 1 MiB.
	MaxPayload int
	// CallTimeout is the deadline of a call whose context has none.
	// Default 10 s.
	CallTimeout time.Duration
	// HeartbeatTTL is how long the node's registration lives without a
	// heartbeat; heartbeats run every third of it. A killed node stops being
	// a responder, and its pending group entries become reclaimable, after
	// about this long. Default 10 s.
	HeartbeatTTL time.Duration
	// ClaimIdle is how long a group entry may sit unacknowledged with its
	// reader silent before a live copy reclaims it (XAUTOCLAIM). A copy keeps
	// the entries it is still handling fresh, so only entries of dead copies
	// age past it. Default HeartbeatTTL.
	ClaimIdle time.Duration
	// InboxMaxLen caps the inbox streams this node writes requests to
	// (XADD MAXLEN ~; the writer of an entry trims). Give every process
	// the same value. Default 100 000.
	InboxMaxLen int64
	// ReplyMaxLen caps the reply streams this node answers into
	// (XADD MAXLEN ~). Default 10 000.
	ReplyMaxLen int64
	// DeadLetterMaxLen caps the dead-letter stream, whose entries keep at
	// most DeadLetterRawMax bytes of a message. Default 10 000.
	DeadLetterMaxLen int64
	// ReadCount is how many entries one read takes (XREAD[GROUP] COUNT).
	// Default 512.
	ReadCount int64
	// BlockTimeout bounds each blocking read, and so how long Close waits
	// for a group reader. Default 1 s.
	BlockTimeout time.Duration
	// BatchLinger is how long the inbox reader runs a batch's handlers
	// itself, so their replies go out in one pipeline, before a fresh reader
	// takes over the inbox and the rest of the batch runs in goroutines
	// (their replies then go out on their own). It bounds how long a slow
	// handler can hold up other requests. Default 1 ms.
	BatchLinger time.Duration
	// MaxConcurrent bounds handlers running at once; a node at the limit
	// stops reading its inbox until one finishes. Default 1024.
	MaxConcurrent int
	// WriteBatch bounds how many queued writes go into one pipeline.
	// Default 1024.
	WriteBatch int
	// DirectoryRefresh is how often the node refreshes its view of live
	// nodes. A call to an address the view lacks refreshes it at once, so a
	// node that just started is found. Default 1 s.
	DirectoryRefresh time.Duration
	// ShardMapTTL is how long CallGuild caches the shard map. Default 2 s.
	ShardMapTTL time.Duration
	// Eval bounds the expressions this node evaluates for others (OpEval):
	// deadline, memory budget, size and concurrency, or eval disabled. See
	// EvalLimits for the defaults.
	Eval EvalLimits
	// Logger receives the node's logs. Default: discard.
	Logger *slog.Logger
}

func (o *Options) setDefaults() error {
	if o.Redis == nil {
		return errors.New("Options.Redis is nil")
	}
	if o.Keys.Namespace() == "" {
		return errors.New("Options.Keys is the zero Keyspace")
	}
	if err := checkAddr(o.Addr); err != nil {
		return err
	}
	if o.Instance == "" {
		o.Instance = kindOf(o.Addr) + "-" + randomHex(6)
	}
	if err := keyspace.CheckName(o.Instance); err != nil {
		return fmt.Errorf("%w: instance: %w", ErrBadAddress, err)
	}
	def := func(v *time.Duration, d time.Duration) {
		if *v <= 0 {
			*v = d
		}
	}
	defN := func(v *int64, d int64) {
		if *v <= 0 {
			*v = d
		}
	}
	if o.MaxPayload <= 0 {
		o.MaxPayload = 1 << 20
	}
	def(&o.CallTimeout, 10*time.Second)
	def(&o.HeartbeatTTL, 10*time.Second)
	def(&o.ClaimIdle, o.HeartbeatTTL)
	def(&o.BlockTimeout, time.Second)
	def(&o.BatchLinger, time.Millisecond)
	def(&o.DirectoryRefresh, time.Second)
	def(&o.ShardMapTTL, 2*time.Second)
	defN(&o.InboxMaxLen, 100_000)
	defN(&o.ReplyMaxLen, 10_000)
	defN(&o.DeadLetterMaxLen, 10_000)
	defN(&o.ReadCount, 512)
	if o.MaxConcurrent <= 0 {
		o.MaxConcurrent = 1024
	}
	if o.WriteBatch <= 0 {
		o.WriteBatch = 1024
	}
	o.Eval.setDefaults()
	if o.Logger == nil {
		o.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	return nil
}

// Node kinds, the part of an address before the colon.
const (
	KindLauncher = "launcher"
	KindCluster  = "cluster"
	KindService  = "service"
	KindCLI      = "cli"
)

// Broadcast targets accepted by Gather and Eval besides a single address.
const (
	TargetClusters = "clusters"
	TargetServices = "services"
	TargetAll      = "all"
)

// ClusterAddr returns the address of cluster id, "cluster:<id>".
func ClusterAddr(id int) string { return fmt.Sprintf("cluster:%d", id) }

// ServiceAddr returns the address of service name, "service:<name>".
func ServiceAddr(name string) string { return "service:" + name }

func kindOf(addr string) string {
	k, _, _ := strings.Cut(addr, ":")
	return k
}

func checkAddr(addr string) error {
	// An address becomes part of its inbox's key.
	if err := keyspace.CheckName(addr); err != nil {
		return fmt.Errorf("%w: %w", ErrBadAddress, err)
	}
	k, rest, hasColon := strings.Cut(addr, ":")
	switch k {
	case KindLauncher:
		// "launcher", or "launcher:<id>" when several launchers run a bot.
		if !hasColon || rest != "" {
			return nil
		}
	case KindCluster, KindService, KindCLI:
		if rest != "" {
			return nil
		}
	}
	return fmt.Errorf("%w: %q (want launcher, launcher:<id>, cluster:<id>, service:<name> or cli:<id>)", ErrBadAddress, addr)
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
