package region

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
)

// The Raft port speaks a small handshake before anything else. The dialer sends
//
//	"MRMR" | version (1) | mode ('R' Raft RPCs, 'C' control) | len(region) (1 byte) | region
//
// and the listener answers one status byte (0 accepted, 1 wrong region, 2 bad hello)
// followed by len(region) and its own region. A connection from another region is
// closed right after the answer, so Raft never sees a message from another region.
const (
	helloMagic   = "MRMR"
	helloVersion = 1
	modeRaft     = 'R'
	modeControl  = 'C'

	helloOK          = 0
	helloWrongRegion = 1
	helloBad         = 2

	handshakeTimeout = 3 * time.Second
	maxRegionLen     = 255
)

// ErrWrongRegion is returned by Dial (and Control calls) when the remote node belongs to
// another region.
var ErrWrongRegion = errors.New("remote raft port belongs to another region")

type hello struct {
	mode   byte
	region string
}

func writeHello(w io.Writer, h hello) error {
	if len(h.region) > maxRegionLen {
		return fmt.Errorf("region name of %d bytes, the limit is %d", len(h.region), maxRegionLen)
	}
	b := append([]byte(helloMagic), helloVersion, h.mode, byte(len(h.region)))
	_, err := w.Write(append(b, h.region...))
	return err
}

// readHello parses the dialer's hello. It is the decoder of untrusted bytes on the Raft
// port (fuzzed by FuzzReadHello).
func readHello(r io.Reader) (hello, error) {
	var hdr [7]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return hello{}, fmt.Errorf("read hello: %w", err)
	}
	if string(hdr[:4]) != helloMagic {
		return hello{}, errors.New("read hello: not a murmur raft connection (bad magic)")
	}
	if hdr[4] != helloVersion {
		return hello{}, fmt.Errorf("read hello: version %d, want %d", hdr[4], helloVersion)
	}
	if hdr[5] != modeRaft && hdr[5] != modeControl {
		return hello{}, fmt.Errorf("read hello: unknown mode %q", hdr[5])
	}
	region := make([]byte, hdr[6])
	if _, err := io.ReadFull(r, region); err != nil {
		return hello{}, fmt.Errorf("read hello region: %w", err)
	}
	return hello{mode: hdr[5], region: string(region)}, nil
}

func writeAnswer(w io.Writer, status byte, region string) error {
	_, err := w.Write(append([]byte{status, byte(len(region))}, region...))
	return err
}

func readAnswer(r io.Reader) (byte, string, error) {
	var hdr [2]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return 0, "", fmt.Errorf("read handshake answer: %w", err)
	}
	region := make([]byte, hdr[1])
	if _, err := io.ReadFull(r, region); err != nil {
		return 0, "", fmt.Errorf("read handshake answer: %w", err)
	}
	return hdr[0], string(region), nil
}

// ConnAuth authenticates connections on the Raft port before the region handshake
// (agent/secure.Channel: mutual TLS or the gossip-key challenge). Client and Server
// close conn on error.
type ConnAuth interface {
	Client(conn net.Conn, peer string, deadline time.Time) (net.Conn, error)
	Server(conn net.Conn) (net.Conn, error)
}

// dialRegion opens a connection to addr, authenticates it with auth (if not nil) and
// completes the handshake in mode.
func dialRegion(ctx context.Context, auth ConnAuth, addr, region string, mode byte) (net.Conn, error) {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	dl := time.Now().Add(handshakeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	if auth != nil {
		if conn, err = auth.Client(conn, "", dl); err != nil {
			return nil, err
		}
	}
	_ = conn.SetDeadline(dl)
	if err := writeHello(conn, hello{mode: mode, region: region}); err != nil {
		conn.Close()
		return nil, fmt.Errorf("raft handshake with %s: %w", addr, err)
	}
	status, theirs, err := readAnswer(conn)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("raft handshake with %s: %w", addr, err)
	}
	switch status {
	case helloOK:
	case helloWrongRegion:
		conn.Close()
		return nil, fmt.Errorf("raft handshake with %s: %w (theirs %q, ours %q)", addr, ErrWrongRegion, theirs, region)
	default:
		conn.Close()
		return nil, fmt.Errorf("raft handshake with %s: refused (status %d)", addr, status)
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}

// streamLayer is the raft.StreamLayer of the TCP transport: it handshakes every
// connection, hands Raft connections to Accept, serves control connections itself and
// refuses connections from other regions.
type streamLayer struct {
	ln        net.Listener
	advertise net.Addr
	region    string
	auth      ConnAuth // nil: no authentication below the region handshake
	log       *slog.Logger
	onReject  func() // counts refused connections; must not block

	raftCh chan net.Conn
	done   chan struct{}
	once   sync.Once
	wg     sync.WaitGroup // handshake and control goroutines

	mu      sync.Mutex // guards handler
	handler func(ControlRequest) ControlResponse
}

var _ raft.StreamLayer = (*streamLayer)(nil)

func newStreamLayer(ln net.Listener, advertise net.Addr, region string, auth ConnAuth, log *slog.Logger, onReject func()) *streamLayer {
	return &streamLayer{ln: ln, advertise: advertise, region: region, auth: auth, log: log, onReject: onReject,
		raftCh: make(chan net.Conn), done: make(chan struct{})}
}

// serve accepts connections until Close. It runs on a goroutine owned by Node.Run. An
// accept error (e.g. out of file descriptors under a flood of connections) is retried
// with backoff, as memberlist's listener does: the Raft port must not stay closed.
func (s *streamLayer) serve() {
	const minDelay, maxDelay = 5 * time.Millisecond, time.Second
	delay := time.Duration(0)
	for {
		conn, err := s.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-s.done:
				return
			default:
			}
			delay = min(max(2*delay, minDelay), maxDelay)
			s.log.Warn("raft listener: accept failed, retrying", "err", err, "in", delay)
			select {
			case <-time.After(delay):
			case <-s.done:
				return
			}
			continue
		}
		delay = 0
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.handshake(conn)
		}()
	}
}

func (s *streamLayer) handshake(conn net.Conn) {
	if s.auth != nil {
		var err error
		if conn, err = s.auth.Server(conn); err != nil {
			s.onReject() // the authenticator logs the reason
			return
		}
	}
	_ = conn.SetDeadline(time.Now().Add(handshakeTimeout))
	h, err := readHello(conn)
	if err != nil {
		s.onReject() // counted before the answer, so a caller that sees it sees the count
		_ = writeAnswer(conn, helloBad, s.region)
		conn.Close()
		s.log.Debug("raft connection refused", "remote", conn.RemoteAddr().String(), "err", err)
		return
	}
	if h.region != s.region {
		s.onReject()
		_ = writeAnswer(conn, helloWrongRegion, s.region)
		conn.Close()
		s.log.Warn("raft connection from another region refused", "remote", conn.RemoteAddr().String(), "their_region", h.region)
		return
	}
	if err := writeAnswer(conn, helloOK, s.region); err != nil {
		conn.Close()
		return
	}
	if h.mode == modeControl {
		s.serveControl(conn)
		return
	}
	_ = conn.SetDeadline(time.Time{})
	select {
	case s.raftCh <- conn:
	case <-s.done:
		conn.Close()
	}
}

func (s *streamLayer) serveControl(conn net.Conn) {
	defer conn.Close()
	h := newCodec()
	req, err := decodeControlRequest(h, bufio.NewReader(io.LimitReader(conn, maxControlLen)))
	if err != nil {
		s.log.Debug("bad control request", "remote", conn.RemoteAddr().String(), "err", err)
		return
	}
	s.mu.Lock()
	handler := s.handler
	s.mu.Unlock()
	resp := ControlResponse{Reason: "node not ready"}
	if handler != nil {
		resp = handler(req)
	}
	_ = codec.NewEncoder(conn, h).Encode(resp)
}

func (s *streamLayer) Accept() (net.Conn, error) {
	select {
	case c := <-s.raftCh:
		return c, nil
	case <-s.done:
		return nil, net.ErrClosed
	}
}

func (s *streamLayer) Close() error {
	var err error
	s.once.Do(func() {
		close(s.done)
		err = s.ln.Close()
	})
	return err
}

func (s *streamLayer) Addr() net.Addr { return s.advertise }

func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return dialRegion(ctx, s.auth, string(addr), s.region, modeRaft)
}

// Control carries the small requests nodes of one region send each other outside Raft:
// reachability probes and the bootstrap promise round. Serve registers this node's
// handler; Call sends one request and waits for the answer. Implementations: the TCP
// one on the Raft port (with the region handshake) and InmemNetwork for tests.
type Control interface {
	Call(ctx context.Context, addr string, req ControlRequest) (ControlResponse, error)
	Serve(h func(ControlRequest) ControlResponse)
}

// Control request kinds.
const (
	CtlProbe   uint8 = 1 // are you there, in my region? (answers OK)
	CtlPropose uint8 = 2 // promise to bootstrap with List, proposed by From
	CtlRelease uint8 = 3 // From gives up its proposal
)

// ControlRequest is one control message.
type ControlRequest struct {
	Kind uint8    `codec:"k"`
	From string   `codec:"f"`
	List []string `codec:"l,omitempty"`
}

// ControlResponse answers a ControlRequest.
type ControlResponse struct {
	OK       bool   `codec:"ok"`
	Reason   string `codec:"r,omitempty"`
	HasState bool   `codec:"s,omitempty"`
}

const maxControlLen = 64 << 10

// decodeControlRequest reads one control request (fuzzed by FuzzControlRequest).
func decodeControlRequest(h *codec.MsgpackHandle, r io.Reader) (ControlRequest, error) {
	var req ControlRequest
	if err := codec.NewDecoder(r, h).Decode(&req); err != nil {
		return ControlRequest{}, fmt.Errorf("decode control request: %w", err)
	}
	if req.Kind < CtlProbe || req.Kind > CtlRelease {
		return ControlRequest{}, fmt.Errorf("decode control request: unknown kind %d", req.Kind)
	}
	if len(req.From) > MaxNameLen || len(req.List) > 16 {
		return ControlRequest{}, errors.New("decode control request: from or list too long")
	}
	for _, id := range req.List {
		if id == "" || len(id) > MaxNameLen {
			return ControlRequest{}, errors.New("decode control request: bad id in list")
		}
	}
	return req, nil
}

// tcpControl is the Control of the TCP transport.
type tcpControl struct {
	region string
	auth   ConnAuth // nil: none
	sl     *streamLayer
}

func (c *tcpControl) Serve(h func(ControlRequest) ControlResponse) {
	c.sl.mu.Lock()
	c.sl.handler = h
	c.sl.mu.Unlock()
}

func (c *tcpControl) Call(ctx context.Context, addr string, req ControlRequest) (ControlResponse, error) {
	conn, err := dialRegion(ctx, c.auth, addr, c.region, modeControl)
	if err != nil {
		return ControlResponse{}, err
	}
	defer conn.Close()
	dl := time.Now().Add(handshakeTimeout)
	if d, ok := ctx.Deadline(); ok && d.Before(dl) {
		dl = d
	}
	_ = conn.SetDeadline(dl)
	h := newCodec()
	if err := codec.NewEncoder(conn, h).Encode(req); err != nil {
		return ControlResponse{}, fmt.Errorf("control call %s: %w", addr, err)
	}
	var resp ControlResponse
	if err := codec.NewDecoder(bufio.NewReader(io.LimitReader(conn, maxControlLen)), h).Decode(&resp); err != nil {
		return ControlResponse{}, fmt.Errorf("control call %s: %w", addr, err)
	}
	return resp, nil
}
