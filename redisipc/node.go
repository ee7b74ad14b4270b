package redisipc

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/megane-go/megane/keyspace"
)

// Request is one request as its handler sees it.
type Request struct {
	// ID correlates the reply with the call; unique per caller.
	ID string
	// Op names the handler.
	Op string
	// From is the caller's address.
	From string
	// ReplyTo is the caller's instance; empty for a Send.
	ReplyTo string
	// Deadline is when the caller stops waiting. The handler's context
	// carries it too.
	Deadline time.Time
	// Payload is the request body.
	Payload []byte
	// To is the address or broadcast target the request was sent to.
	To string
	// Instance is the caller's instance.
	Instance string
}

// Decode unmarshals the JSON payload into v.
func (r *Request) Decode(v any) error { return json.Unmarshal(r.Payload, v) }

// Handler answers one request. Its result is the reply payload; an error is
// sent back as a RemoteError (return an error wrapping ErrUnknownOp to tell
// the caller the op is not served). A panic is recovered and reported the
// same way.
type Handler func(ctx context.Context, req *Request) ([]byte, error)

// Node is one process's endpoint: it serves its inbox, answers broadcasts,
// and calls other nodes. It is safe for concurrent use.
type Node struct {
	opts    Options
	rdb     redis.UniversalClient
	ks      keyspace.Keyspace
	log     *slog.Logger
	addr    string
	inst    string
	kind    string
	host    string
	started time.Time

	inboxKey string
	replyKey string

	mu       sync.RWMutex
	handlers map[string]Handler
	fallback Handler
	statsFn  StatsFunc

	env     *EvalEnv
	evalSem chan struct{}

	idSeq   atomic.Uint64
	pending pendingCalls

	out        chan outMsg
	writerStop chan struct{}
	writerDone chan struct{}

	dir    *directory
	shards shardMapCache

	base        context.Context
	cancelBase  context.CancelFunc
	closing     chan struct{}
	closed      atomic.Bool
	serving     atomic.Bool
	startOnce   sync.Once
	inboxLast   string
	inboxStop   chan struct{}
	inboxWG     sync.WaitGroup
	loopsWG     sync.WaitGroup
	handlerWG   sync.WaitGroup
	replyDone   chan struct{}
	sem         chan struct{}
	pubsub      *redis.PubSub
	inflight    inflightSet
	handled     atomic.Int64
	failed      atomic.Int64
	dropped     atomic.Int64
	deadLetters atomic.Int64
	calls       callMetrics
}

// New registers a node, starts its writer, reply reader, broadcast
// subscriber and heartbeat, and (unless Options.Hold) starts serving its
// inbox. Close it when done.
func New(ctx context.Context, opts Options) (*Node, error) {
	if err := opts.setDefaults(); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrInvalidOptions, err)
	}
	host, _ := os.Hostname()
	n := &Node{
		opts:       opts,
		rdb:        opts.Redis,
		ks:         opts.Keys,
		log:        opts.Logger.With(slog.String("addr", opts.Addr), slog.String("instance", opts.Instance)),
		addr:       opts.Addr,
		inst:       opts.Instance,
		kind:       kindOf(opts.Addr),
		host:       host,
		started:    time.Now(),
		inboxKey:   opts.Keys.Inbox(opts.Addr),
		replyKey:   opts.Keys.Replies(opts.Instance),
		handlers:   map[string]Handler{},
		out:        make(chan outMsg, 4*opts.WriteBatch),
		writerStop: make(chan struct{}),
		writerDone: make(chan struct{}),
		closing:    make(chan struct{}),
		inboxStop:  make(chan struct{}),
		replyDone:  make(chan struct{}),
		sem:        make(chan struct{}, opts.MaxConcurrent),
		evalSem:    make(chan struct{}, opts.Eval.MaxConcurrent),
		pending:    pendingCalls{m: map[string]*pendingCall{}},
		inflight:   inflightSet{m: map[string]time.Time{}},
	}
	n.base, n.cancelBase = context.WithCancel(context.WithoutCancel(ctx))
	n.dir = newDirectory(n)
	n.env = newEvalEnv(n)
	// Ids start at a random point so a reused Instance cannot match a
	// previous incarnation's late replies.
	n.idSeq.Store(uint64(time.Now().UnixNano() & 0xffffffff))

	if err := n.prepare(ctx); err != nil {
		n.cancelBase()
		return nil, err
	}
	n.registerBuiltins()

	go n.writer()
	n.loopsWG.Add(3)
	go n.replyReader()
	go n.heartbeatLoop()
	go n.broadcastLoop()
	n.loopsWG.Add(1)
	go n.directoryLoop()

	if !opts.Hold {
		if err := n.Start(ctx); err != nil {
			_ = n.Close(ctx)
			return nil, err
		}
	}
	return n, nil
}

// prepare does the Redis work New needs before any loop runs.
func (n *Node) prepare(ctx context.Context) error {
	// A fresh reply stream: nothing in it can belong to this process yet.
	if err := n.createReplies(ctx, true); err != nil {
		return err
	}
	// The inbox exists before the address is advertised, and a plain
	// reader starts at its current end, so no request sent to this node is
	// skipped and none meant for an earlier one is served.
	last, err := n.createInbox(ctx)
	if err != nil {
		return err
	}
	n.inboxLast = last
	n.pubsub = n.rdb.Subscribe(ctx, n.ks.Broadcast())
	if _, err := n.pubsub.Receive(ctx); err != nil {
		_ = n.pubsub.Close()
		return fmt.Errorf("redisipc: subscribe %s: %w", n.ks.Broadcast(), err)
	}
	if err := n.heartbeat(ctx); err != nil {
		_ = n.pubsub.Close()
		return fmt.Errorf("redisipc: register: %w", err)
	}
	return nil
}

// Start serves the inbox and advertises the address, for a node created
// with Options.Hold. It is a no-op otherwise and when called again.
func (n *Node) Start(ctx context.Context) error {
	if n.closed.Load() {
		return ErrClosed
	}
	var err error
	n.startOnce.Do(func() {
		n.serving.Store(true)
		n.inboxWG.Add(1)
		go n.inboxReader(n.inboxLast)
		if n.opts.Group {
			n.inboxWG.Add(1)
			go n.reclaimLoop()
		}
		err = n.heartbeat(ctx)
	})
	return err
}

// Addr returns the node's address, e.g. "cluster:3".
func (n *Node) Addr() string { return n.addr }

// Instance returns the node's unique instance id.
func (n *Node) Instance() string { return n.inst }

// Handle registers h for op, replacing any earlier handler. Ops starting
// with "$" are reserved for the built-in discovery and eval ops; Handle
// panics on them, as it does on an empty op or a nil handler.
func (n *Node) Handle(op string, h Handler) {
	if op == "" || strings.HasPrefix(op, "$") || h == nil {
		panic(fmt.Sprintf("redisipc: Handle(%q): op must be non-empty, not start with $, and the handler non-nil", op))
	}
	n.handle(op, h)
}

func (n *Node) handle(op string, h Handler) {
	n.mu.Lock()
	n.handlers[op] = h
	n.mu.Unlock()
}

// HandleFallback registers h for every op that has no handler of its own
// (services route all their commands through it). Nil removes it.
func (n *Node) HandleFallback(h Handler) {
	n.mu.Lock()
	n.fallback = h
	n.mu.Unlock()
}

func (n *Node) handler(op string) Handler {
	n.mu.RLock()
	defer n.mu.RUnlock()
	if h, ok := n.handlers[op]; ok {
		return h
	}
	if strings.HasPrefix(op, "$") {
		return nil
	}
	return n.fallback
}

// withDeadline gives ctx the default call deadline when it has none.
func (n *Node) withDeadline(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return ctx, func() {}
	}
	return context.WithTimeout(ctx, n.opts.CallTimeout)
}

func (n *Node) nextID() string { return strconv.FormatUint(n.idSeq.Add(1), 10) }

// Call sends a request to the node at address to and waits for its reply.
// It fails fast with ErrNoResponders when no live node serves the address,
// with ErrTimeout when ctx's deadline passes first (ctx without a deadline
// gets Options.CallTimeout), and with a *RemoteError when the handler
// failed.
func (n *Node) Call(ctx context.Context, to, op string, payload []byte) (res []byte, err error) {
	start := time.Now()
	defer func() { n.calls.observe(op, to, time.Since(start), err) }()
	if n.closed.Load() {
		return nil, ErrClosed
	}
	if len(payload) > n.opts.MaxPayload {
		return nil, fmt.Errorf("%w: %d bytes to %s, limit %d", ErrPayloadTooLarge, len(payload), to, n.opts.MaxPayload)
	}
	if err := checkAddr(to); err != nil {
		return nil, err
	}
	ctx, cancel := n.withDeadline(ctx)
	defer cancel()
	live, err := n.dir.hasAddr(ctx, to)
	if err != nil {
		return nil, err
	}
	if !live {
		return nil, fmt.Errorf("%w: %s", ErrNoResponders, to)
	}
	dl, _ := ctx.Deadline()
	id := n.nextID()
	pc := n.pending.add(id, 1)
	defer n.pending.remove(id)
	env := envelope{Kind: kindRequest, Deadline: dl.UnixMilli(), ID: id, Op: op, From: n.addr,
		Instance: n.inst, To: to, ReplyTo: n.inst, Payload: payload}
	if err := n.enqueue(ctx, outMsg{op: outXAdd, key: n.ks.Inbox(to), maxLen: n.opts.InboxMaxLen,
		noMkStream: true, data: env.encode(), done: pc.failer()}); err != nil {
		return nil, n.waitErr(ctx, to, op, err)
	}
	select {
	case r := <-pc.ch:
		if r.err != nil {
			return nil, r.err
		}
		return r.env.result()
	case <-ctx.Done():
		return nil, n.waitErr(ctx, to, op, ctx.Err())
	case <-n.closing:
		return nil, ErrClosed
	}
}

func (n *Node) waitErr(ctx context.Context, to, op string, err error) error {
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%w: %s %s: %w", ErrTimeout, to, op, err)
	}
	return err
}

// result turns a reply envelope into the handler's result.
func (e *envelope) result() ([]byte, error) {
	if e.Status == statusError {
		return nil, &RemoteError{From: e.From, Message: string(e.Payload), Code: e.Code}
	}
	return e.Payload, nil
}

// CallJSON is Call with in marshalled to JSON and the reply unmarshalled
// into out (skipped when out is nil).
func (n *Node) CallJSON(ctx context.Context, to, op string, in, out any) error {
	b, err := json.Marshal(in)
	if err != nil {
		return fmt.Errorf("redisipc: encode %s request: %w", op, err)
	}
	res, err := n.Call(ctx, to, op, b)
	if err != nil {
		return err
	}
	if out == nil || len(res) == 0 {
		return nil
	}
	if err := json.Unmarshal(res, out); err != nil {
		return fmt.Errorf("redisipc: decode %s reply from %s: %w", op, to, err)
	}
	return nil
}

// Send delivers a request that gets no reply (fire-and-forget). It returns
// once the request is in the target's inbox; ErrNoResponders when no live
// node serves the address. Handler errors are only logged by the target.
func (n *Node) Send(ctx context.Context, to, op string, payload []byte) error {
	if n.closed.Load() {
		return ErrClosed
	}
	if len(payload) > n.opts.MaxPayload {
		return fmt.Errorf("%w: %d bytes to %s, limit %d", ErrPayloadTooLarge, len(payload), to, n.opts.MaxPayload)
	}
	if err := checkAddr(to); err != nil {
		return err
	}
	ctx, cancel := n.withDeadline(ctx)
	defer cancel()
	live, err := n.dir.hasAddr(ctx, to)
	if err != nil {
		return err
	}
	if !live {
		return fmt.Errorf("%w: %s", ErrNoResponders, to)
	}
	dl, _ := ctx.Deadline()
	env := envelope{Kind: kindSend, Deadline: dl.UnixMilli(), ID: n.nextID(), Op: op, From: n.addr,
		Instance: n.inst, To: to, Payload: payload}
	done := make(chan error, 1)
	if err := n.enqueue(ctx, outMsg{op: outXAdd, key: n.ks.Inbox(to), maxLen: n.opts.InboxMaxLen,
		noMkStream: true, data: env.encode(), done: func(err error) { done <- err }}); err != nil {
		return n.waitErr(ctx, to, op, err)
	}
	select {
	case err := <-done:
		if err != nil {
			return fmt.Errorf("redisipc: send %s to %s: %w", op, to, err)
		}
		return nil
	case <-ctx.Done():
		return n.waitErr(ctx, to, op, ctx.Err())
	}
}

// Close stops serving, lets running handlers finish and their replies go
// out (bounded by ctx), fails calls still waiting with ErrClosed, and
// removes the node's registration and reply stream (and a CLI node's
// inbox; other inboxes are left to expire, or to the next process at the
// address). It is safe to call more than once.
func (n *Node) Close(ctx context.Context) error {
	if !n.closed.CompareAndSwap(false, true) {
		return nil
	}
	// Deregister first, so other nodes stop routing here while we drain.
	dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	pipe := n.rdb.Pipeline()
	pipe.ZRem(dctx, n.ks.Nodes(), n.inst)
	pipe.Del(dctx, n.ks.Node(n.inst))
	_, derr := pipe.Exec(dctx)

	close(n.inboxStop)
	if !n.opts.Group && n.serving.Load() {
		// A wake-up entry ends the XREAD BLOCK at once; in a group it could
		// go to another copy, so group readers end at their block timeout.
		n.rdb.XAdd(dctx, &redis.XAddArgs{Stream: n.inboxKey, MaxLen: n.opts.InboxMaxLen, Approx: true,
			NoMkStream: true, Values: n.marker()})
	}
	err := waitGroup(ctx, &n.inboxWG)
	if err == nil {
		err = waitGroup(ctx, &n.handlerWG)
	}
	close(n.closing)
	_ = n.pubsub.Close()
	n.pending.failAll(ErrClosed)
	close(n.writerStop)
	select {
	case <-n.writerDone:
	case <-ctx.Done():
	}
	n.cancelBase()
	n.rdb.XAdd(dctx, &redis.XAddArgs{Stream: n.replyKey, NoMkStream: true, Values: n.marker()})
	lerr := waitGroup(ctx, &n.loopsWG)
	if err == nil {
		err = lerr
	}
	pipe = n.rdb.Pipeline()
	pipe.Del(dctx, n.replyKey)
	// Again: a heartbeat that was running while Close deregistered may
	// have written the registration back.
	pipe.ZRem(dctx, n.ks.Nodes(), n.inst)
	pipe.Del(dctx, n.ks.Node(n.inst))
	if n.ephemeral() {
		pipe.Del(dctx, n.inboxKey)
	}
	if n.opts.Group && n.inflight.len() == 0 {
		// DELCONSUMER drops the consumer's pending entries, so it runs only
		// when none are left; otherwise they stay for a live copy to reclaim.
		pipe.XGroupDelConsumer(dctx, n.inboxKey, n.ks.InboxGroup(), n.inst)
	}
	_, _ = pipe.Exec(dctx)
	if err == nil && derr != nil {
		err = fmt.Errorf("redisipc: deregister: %w", derr)
	}
	return err
}

func waitGroup(ctx context.Context, wg *sync.WaitGroup) error {
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("redisipc: close: %w", ctx.Err())
	}
}
