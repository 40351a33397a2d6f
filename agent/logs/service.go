package logs

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/murmur-edge/murmur/runtime"
)

// Config configures a Service. Zero durations and sizes take the defaults noted.
type Config struct {
	// Node is this node's name (for messages).
	Node string
	// Local sends the output of one of this node's instances: the supervisor's Logs.
	Local func(ctx context.Context, instance string, opts runtime.LogOptions, sink runtime.LogSink) error
	// Send delivers a message to a node (gossip's reliable channel); Reply answers
	// a node that just sent one (gossip.ReplyReliable). Both may block.
	Send, Reply func(node string, payload []byte) error
	Clock       runtime.Clock // default runtime.RealClock
	Logger      *slog.Logger

	// Hold is the longest a serving node keeps a pull waiting for output (default
	// 5 s); the asking node sends a pull again when no answer came Hold + Slack
	// (default 3 s) after it, and gives up after Retries more (default 1).
	Hold    time.Duration
	Slack   time.Duration
	Retries int
	// Idle ends a session nobody pulled for this long (default 45 s).
	Idle time.Duration
	// MaxSessions bounds the sessions this node serves at once (default 16).
	MaxSessions int
	// ChunkBytes bounds one chunk's output (default 256 KiB, at most
	// MaxChunkBytes); BufferBytes what a session reads ahead (default 1 MiB).
	ChunkBytes  int
	BufferBytes int
}

// Errors of Stream, checked with errors.Is. The message names the node.
var (
	// ErrNoInstance: the node does not run the instance (any more).
	ErrNoInstance = errors.New("instance not on the node")
	// ErrNoLogs: the node runs it but keeps no output of it.
	ErrNoLogs = errors.New("no output kept")
	// ErrUnreachable: the node could not be reached or stopped answering.
	ErrUnreachable = errors.New("node unreachable")
	// ErrBusy: the node serves too many log streams.
	ErrBusy = errors.New("node busy")
)

// Service serves this node's instances' output to other nodes and fetches other
// nodes' for this node's API. See the package doc for the protocol.
type Service struct {
	cfg   Config
	log   *slog.Logger
	inbox chan inbound // HandleMessage → Run: opens, pulls of unknown sessions
	ids   atomic.Uint64

	mu       sync.Mutex // guards the fields below; never held while sending
	sessions map[uint64]*session
	nextSess uint64
	waiters  map[uint64]waiter // pull ID → the asking Stream
}

type waiter struct {
	node string // the answer must come from it
	ch   chan Chunk
}

type inbound struct {
	from string
	pull Pull
}

// session is one stream this node serves to node from.
type session struct {
	id     uint64
	from   string
	pulls  chan Pull     // cap 4; a full channel drops (the asker sends again)
	closed chan struct{} // closed by Close from the asker
	once   sync.Once
	buf    *buffer
}

func (s *session) close() { s.once.Do(func() { close(s.closed) }) }

// New returns a Service. It starts nothing.
func New(cfg Config) *Service {
	if cfg.Clock == nil {
		cfg.Clock = runtime.RealClock{}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Hold <= 0 {
		cfg.Hold = 5 * time.Second
	}
	if cfg.Slack <= 0 {
		cfg.Slack = 3 * time.Second
	}
	if cfg.Retries <= 0 {
		cfg.Retries = 1
	}
	if cfg.Idle <= 0 {
		cfg.Idle = 45 * time.Second
	}
	if cfg.MaxSessions <= 0 {
		cfg.MaxSessions = 16
	}
	if cfg.ChunkBytes <= 0 || cfg.ChunkBytes > MaxChunkBytes {
		cfg.ChunkBytes = 256 << 10
	}
	if cfg.BufferBytes <= 0 {
		cfg.BufferBytes = 1 << 20
	}
	return &Service{
		cfg: cfg, log: cfg.Logger, inbox: make(chan inbound, 64),
		sessions: map[uint64]*session{}, waiters: map[uint64]waiter{},
	}
}

// HandleMessage takes one message of gossip kind KindLogs from node from. It never
// blocks: answers go to their Stream, pulls to their session or to Run, and a
// message that finds no room is dropped (its sender sends it again).
func (s *Service) HandleMessage(from string, payload []byte) {
	msg, err := Decode(payload)
	if err != nil {
		s.log.Debug("bad logs message", "from", from, "err", err)
		return
	}
	switch m := msg.(type) {
	case Chunk:
		s.mu.Lock()
		w, ok := s.waiters[m.ID]
		s.mu.Unlock()
		if ok && w.node == from {
			select {
			case w.ch <- m:
			default:
			}
		}
	case Close:
		s.mu.Lock()
		ss := s.sessions[m.Session]
		s.mu.Unlock()
		if ss != nil && ss.from == from {
			ss.close()
		}
	case Pull:
		if m.Session != 0 {
			s.mu.Lock()
			ss := s.sessions[m.Session]
			s.mu.Unlock()
			if ss != nil && ss.from == from {
				select {
				case ss.pulls <- m:
				default:
				}
				return
			}
		}
		select {
		case s.inbox <- inbound{from, m}:
		default:
			s.log.Debug("logs: inbox full, pull dropped", "from", from)
		}
	}
}

// Run serves sessions until ctx ends, then ends them and returns once every
// goroutine it started has exited.
func (s *Service) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return nil
		case in := <-s.inbox:
			if in.pull.Session != 0 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s.answer(in.from, Chunk{ID: in.pull.ID, Session: in.pull.Session, Seq: in.pull.Ack + 1, Done: true, Code: codeGone,
						Err: fmt.Sprintf("log session %d on node %s has ended (no pull for %v)", in.pull.Session, s.cfg.Node, s.cfg.Idle)})
				}()
				continue
			}
			ss := s.open(in.from)
			if ss == nil {
				wg.Add(1)
				go func() {
					defer wg.Done()
					s.answer(in.from, Chunk{ID: in.pull.ID, Seq: 1, Done: true, Code: codeBusy,
						Err: fmt.Sprintf("node %s serves %d log streams already; try again later", s.cfg.Node, s.cfg.MaxSessions)})
				}()
				continue
			}
			wg.Add(1)
			go func() { defer wg.Done(); s.serve(ctx, ss, in.pull) }()
		}
	}
}

// open registers a new session for node from, or returns nil at MaxSessions.
func (s *Service) open(from string) *session {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.sessions) >= s.cfg.MaxSessions {
		return nil
	}
	s.nextSess++
	ss := &session{id: s.nextSess, from: from, pulls: make(chan Pull, 4), closed: make(chan struct{}), buf: newBuffer(s.cfg.BufferBytes)}
	s.sessions[ss.id] = ss
	return ss
}

// Sessions is the number of sessions this node serves now.
func (s *Service) Sessions() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.sessions)
}

func (s *Service) answer(to string, c Chunk) {
	b, err := Encode(c)
	if err != nil {
		s.log.Error("logs: encode chunk", "err", err)
		return
	}
	if err := s.cfg.Reply(to, b); err != nil {
		s.log.Debug("logs: answer", "to", to, "err", err)
	}
}

// serve reads the instance's output into the session's buffer and answers the
// session's pulls until the asker closes it, stops pulling for Idle, acknowledges
// its last chunk, or ctx ends.
func (s *Service) serve(ctx context.Context, ss *session, first Pull) {
	sctx, cancel := context.WithCancel(ctx)
	pumped := make(chan struct{})
	defer func() {
		cancel()
		<-pumped
		s.mu.Lock()
		delete(s.sessions, ss.id)
		s.mu.Unlock()
	}()
	go func() {
		defer close(pumped)
		err := s.cfg.Local(sctx, first.Instance, first.Options.LogOptions(), ss.buf.put(sctx))
		ss.buf.finish(err)
	}()
	var seq uint64
	var last Chunk // the last chunk sent, kept until acknowledged
	p := first
	for {
		switch {
		case p.Ack == seq:
			if last.Done && seq > 0 {
				return // the end was received
			}
			seq++
			last = s.nextChunk(sctx, ss, seq)
			s.answer(ss.from, withID(last, p.ID))
		case p.Ack+1 == seq:
			s.answer(ss.from, withID(last, p.ID)) // the answer was lost: again
		}
		idle := s.cfg.Clock.NewTimer(s.cfg.Idle)
		select {
		case p = <-ss.pulls:
			idle.Stop()
		case <-idle.C():
			s.log.Debug("logs: session idle, ending it", "session", ss.id, "from", ss.from, "instance", first.Instance)
			return
		case <-ss.closed:
			idle.Stop()
			return
		case <-ctx.Done():
			idle.Stop()
			return
		}
	}
}

func withID(c Chunk, id uint64) Chunk {
	c.ID = id
	return c
}

// nextChunk waits up to Hold for output (or the end) and takes what is there.
func (s *Service) nextChunk(ctx context.Context, ss *session, seq uint64) Chunk {
	if !ss.buf.ready() {
		t := s.cfg.Clock.NewTimer(s.cfg.Hold)
	wait:
		for !ss.buf.ready() { // a wake-up may be stale: look again
			select {
			case <-ss.buf.notify:
			case <-t.C():
				break wait
			case <-ss.closed:
				break wait
			case <-ctx.Done():
				break wait
			}
		}
		t.Stop()
	}
	frames, done, err := ss.buf.take(s.cfg.ChunkBytes)
	c := Chunk{Session: ss.id, Seq: seq, Frames: frames, Done: done}
	if done && err != nil {
		c.Err = err.Error()
		if len(c.Err) > maxErrorLen {
			c.Err = c.Err[:maxErrorLen]
		}
		switch {
		case errors.Is(err, runtime.ErrNoInstance):
			c.Code = codeNoInstance
		case errors.Is(err, runtime.ErrNoLogs):
			c.Code = codeNoLogs
		default:
			c.Code = codeFailed
		}
	}
	return c
}

// Stream fetches the output of instance from node, passing it to sink in order,
// until the node sends its end (nil), an error (ErrNoInstance, ErrNoLogs, ErrBusy
// or the node's message), stops answering (ErrUnreachable), or ctx ends
// (ctx.Err()). It closes the session on the node when it returns early.
func (s *Service) Stream(ctx context.Context, node, instance string, opts Options, sink runtime.LogSink) (err error) {
	if err := opts.Check(); err != nil {
		return err
	}
	var session, ack uint64
	defer func() {
		if session != 0 && err != nil && !errors.Is(err, ErrUnreachable) {
			if b, eerr := Encode(Close{Session: session}); eerr == nil {
				_ = s.cfg.Send(node, b) // best effort: the session also ends after Idle
			}
		}
	}()
	misses := 0
	for {
		p := Pull{ID: s.ids.Add(1), Session: session, Ack: ack}
		if session == 0 {
			p.Instance, p.Options = instance, opts
		}
		c, err := s.pull(ctx, node, p)
		switch {
		case errors.Is(err, errNoAnswer):
			if misses++; misses > s.cfg.Retries {
				return fmt.Errorf("%w: node %s did not answer %d requests for the output of %q within %v each", ErrUnreachable, node, misses, instance, s.cfg.Hold+s.cfg.Slack)
			}
			continue
		case err != nil:
			return err
		}
		misses = 0
		if session == 0 {
			session = c.Session
		}
		if c.Seq != ack+1 {
			continue // not the chunk asked for: ask again
		}
		ack = c.Seq
		for _, f := range c.Frames {
			if err := sink(f.Stream, f.Data); err != nil {
				return err
			}
		}
		if !c.Done {
			continue
		}
		// The end: acknowledge it so the node lets the session go.
		if b, err := Encode(Pull{ID: s.ids.Add(1), Session: session, Ack: ack}); err == nil {
			_ = s.cfg.Send(node, b)
		}
		session = 0
		return chunkError(node, c)
	}
}

var errNoAnswer = errors.New("no answer")

// pull sends p to node and waits for its answer.
func (s *Service) pull(ctx context.Context, node string, p Pull) (Chunk, error) {
	ch := make(chan Chunk, 1)
	s.mu.Lock()
	s.waiters[p.ID] = waiter{node: node, ch: ch}
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.waiters, p.ID)
		s.mu.Unlock()
	}()
	b, err := Encode(p)
	if err != nil {
		return Chunk{}, err
	}
	if err := s.cfg.Send(node, b); err != nil {
		return Chunk{}, fmt.Errorf("%w: %v", ErrUnreachable, err)
	}
	t := s.cfg.Clock.NewTimer(s.cfg.Hold + s.cfg.Slack)
	defer t.Stop()
	select {
	case c := <-ch:
		return c, nil
	case <-t.C():
		return Chunk{}, errNoAnswer
	case <-ctx.Done():
		return Chunk{}, ctx.Err()
	}
}

// chunkError is the error a final chunk carries, nil for a clean end.
func chunkError(node string, c Chunk) error {
	var kind error
	switch c.Code {
	case codeOK:
		if c.Err == "" {
			return nil
		}
	case codeNoInstance:
		kind = ErrNoInstance
	case codeNoLogs:
		kind = ErrNoLogs
	case codeBusy:
		kind = ErrBusy
	case codeGone:
		kind = ErrUnreachable
	}
	if kind == nil {
		return fmt.Errorf("node %s: %s", node, c.Err)
	}
	return fmt.Errorf("%w: node %s: %s", kind, node, c.Err)
}

// buffer is a session's read-ahead: output from the pump, taken by chunks.
type buffer struct {
	max    int
	notify chan struct{} // cap 1: output or the end arrived
	space  chan struct{} // cap 1: take made room

	mu     sync.Mutex // guards the fields below
	frames []Frame
	size   int
	done   bool
	err    error
}

func newBuffer(max int) *buffer {
	return &buffer{max: max, notify: make(chan struct{}, 1), space: make(chan struct{}, 1)}
}

func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// put returns the sink of the pump: it copies p in, waiting while the buffer is
// full (the asker reads slowly) until ctx ends.
func (b *buffer) put(ctx context.Context) runtime.LogSink {
	return func(stream runtime.LogStream, p []byte) error {
		for {
			b.mu.Lock()
			if b.size < b.max {
				if n := len(b.frames); n > 0 && b.frames[n-1].Stream == stream && len(b.frames[n-1].Data) < 32<<10 {
					b.frames[n-1].Data = append(b.frames[n-1].Data, p...)
				} else {
					b.frames = append(b.frames, Frame{Stream: stream, Data: slices.Clone(p)})
				}
				b.size += len(p)
				b.mu.Unlock()
				signal(b.notify)
				return nil
			}
			b.mu.Unlock()
			select {
			case <-b.space:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}
}

func (b *buffer) finish(err error) {
	b.mu.Lock()
	b.done, b.err = true, err
	b.mu.Unlock()
	signal(b.notify)
}

func (b *buffer) ready() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.size > 0 || b.done
}

// take removes up to max bytes of output; done is set (with the pump's error)
// once the output ended and everything before the end was taken.
func (b *buffer) take(max int) (frames []Frame, done bool, err error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	n := 0
	for len(b.frames) > 0 && n < max {
		f := &b.frames[0]
		if room := max - n; len(f.Data) > room {
			frames = append(frames, Frame{Stream: f.Stream, Data: slices.Clone(f.Data[:room])})
			f.Data = f.Data[room:]
			n += room
			break
		}
		frames = append(frames, *f)
		n += len(f.Data)
		b.frames = b.frames[1:]
	}
	b.size -= n
	if n > 0 {
		signal(b.space)
	}
	if len(b.frames) == 0 && b.done {
		done, err = true, b.err
		if errors.Is(err, context.Canceled) {
			err = nil
		}
	}
	return frames, done, err
}
