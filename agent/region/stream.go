package region

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
)

// The Raft port speaks a small handshake before anything else. The dialer sends
//
//	"MRMR" | version (1) | mode ('R' Raft RPCs, 'C' control) | len(region) (1 byte) | region
//
// and the listener answers one status byte (0 accepted, 1 no group of that region on
// this node, 2 bad hello, 3 not admitted) followed by len(region) and a region name.
// One port serves every group the node runs (its own region and those it is a witness
// for: Mux). A refused connection is closed right after the answer, so a group's Raft
// never sees a message from a node that is neither of its region nor its witness.
const (
	helloMagic   = "MRMR"
	helloVersion = 1
	modeRaft     = 'R'
	modeControl  = 'C'

	helloOK          = 0
	helloWrongRegion = 1
	helloBad         = 2
	helloNotAdmitted = 3

	handshakeTimeout = 3 * time.Second
	maxRegionLen     = 255
)

// ErrWrongRegion is returned by Dial (and Control calls) when the remote node runs no
// group of the region (it belongs to another region and is not its witness).
var ErrWrongRegion = errors.New("remote raft port belongs to another region")

// ErrNotAdmitted is returned when the remote group refuses this node: its certificate
// names another region and the group does not list it as a witness.
var ErrNotAdmitted = errors.New("not admitted by the remote region group")

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
	case helloNotAdmitted:
		conn.Close()
		return nil, fmt.Errorf("raft handshake with %s: %w: region %q does not list this node as a member or witness", addr, ErrNotAdmitted, region)
	default:
		conn.Close()
		return nil, fmt.Errorf("raft handshake with %s: refused (status %d)", addr, status)
	}
	_ = conn.SetDeadline(time.Time{})
	return conn, nil
}

// Mux is a node's Raft port: one listener shared by the node's own region group and
// the groups it is a witness for. It authenticates each connection (ConnAuth), reads
// the region handshake and hands the connection to that region's group, or refuses
// it when this node runs no group of that region or the group does not admit the
// peer (admit: see Node.admits).
type Mux struct {
	ln        net.Listener
	advertise net.Addr
	auth      ConnAuth // nil: no authentication below the region handshake
	log       *slog.Logger
	onReject  func() // counts refused connections; must not block

	done chan struct{}
	once sync.Once
	wg   sync.WaitGroup // serve, handshake and control goroutines

	mu      sync.Mutex // guards regions and closed
	regions map[string]*streamLayer
	closed  bool
}

// NewMux returns the Raft port on ln, advertised as advertise. Serve runs it; Close
// stops it. onReject (may be nil) is called for every refused connection.
func NewMux(ln net.Listener, advertise net.Addr, auth ConnAuth, log *slog.Logger, onReject func()) *Mux {
	if onReject == nil {
		onReject = func() {}
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Mux{ln: ln, advertise: advertise, auth: auth, log: log, onReject: onReject,
		done: make(chan struct{}), regions: map[string]*streamLayer{}}
}

// Listen binds the port (when NewMux was given no listener). Serve accepts on it.
func (m *Mux) Listen(bind string) error {
	ln, err := net.Listen("tcp", bind)
	if err != nil {
		return fmt.Errorf("listen on --raft-bind %s: %w", bind, err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.closed || m.ln != nil {
		ln.Close()
		return errors.New("raft port: already listening or closed")
	}
	m.ln = ln
	return nil
}

// Addr is the advertised address of the port.
func (m *Mux) Addr() net.Addr { return m.advertise }

// register adds region's group to the port. admit decides whether a peer whose
// certificate names (node, region) may speak to this group; nil admits everyone the
// ConnAuth accepted.
func (m *Mux) register(region string, admit func(node, region string) bool) (*streamLayer, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.regions[region]; ok {
		return nil, fmt.Errorf("raft port: region %q already has a group on this node", region)
	}
	s := &streamLayer{mux: m, region: region, admit: admit,
		raftCh: make(chan net.Conn), done: make(chan struct{})}
	m.regions[region] = s
	return s, nil
}

func (m *Mux) unregister(s *streamLayer) {
	m.mu.Lock()
	if m.regions[s.region] == s {
		delete(m.regions, s.region)
	}
	m.mu.Unlock()
	s.Close()
}

func (m *Mux) lookup(region string) *streamLayer {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.regions[region]
}

// Serve accepts connections until Close. An accept error (e.g. out of file
// descriptors under a flood of connections) is retried with backoff, as memberlist's
// listener does: the Raft port must not stay closed.
func (m *Mux) Serve() {
	m.mu.Lock()
	if m.closed || m.ln == nil {
		m.mu.Unlock()
		return
	}
	m.wg.Add(1) // under mu, before Close can Wait: handshakes are added while this is held
	m.mu.Unlock()
	defer m.wg.Done()
	const minDelay, maxDelay = 5 * time.Millisecond, time.Second
	delay := time.Duration(0)
	for {
		conn, err := m.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			select {
			case <-m.done:
				return
			default:
			}
			delay = min(max(2*delay, minDelay), maxDelay)
			m.log.Warn("raft listener: accept failed, retrying", "err", err, "in", delay)
			select {
			case <-time.After(delay):
			case <-m.done:
				return
			}
			continue
		}
		delay = 0
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			m.handshake(conn)
		}()
	}
}

// Close stops accepting, closes the listener and waits for the port's goroutines.
func (m *Mux) Close() error {
	var err error
	m.once.Do(func() {
		m.mu.Lock()
		m.closed = true
		m.mu.Unlock()
		close(m.done)
		if m.ln != nil {
			err = m.ln.Close()
		}
	})
	m.wg.Wait()
	return err
}

func (m *Mux) handshake(conn net.Conn) {
	peerNode, peerRegion, identified := "", "", false
	if m.auth != nil {
		var err error
		if conn, err = m.auth.Server(conn); err != nil {
			m.onReject() // the authenticator logs the reason
			return
		}
		if pi, ok := m.auth.(PeerIdentifier); ok {
			peerNode, peerRegion, identified = pi.PeerIdentity(conn)
		}
	}
	_ = conn.SetDeadline(time.Now().Add(handshakeTimeout))
	h, err := readHello(conn)
	if err != nil {
		m.onReject() // counted before the answer, so a caller that sees it sees the count
		_ = writeAnswer(conn, helloBad, "")
		conn.Close()
		m.log.Debug("raft connection refused", "remote", conn.RemoteAddr().String(), "err", err)
		return
	}
	s := m.lookup(h.region)
	if s == nil {
		m.onReject()
		_ = writeAnswer(conn, helloWrongRegion, m.regionsString())
		conn.Close()
		m.log.Warn("raft connection for a region this node has no group of refused", "remote", conn.RemoteAddr().String(), "their_region", h.region)
		return
	}
	if identified && s.admit != nil && !s.admit(peerNode, peerRegion) {
		m.onReject()
		_ = writeAnswer(conn, helloNotAdmitted, s.region)
		conn.Close()
		m.log.Warn("raft connection refused: the peer is neither of the region nor one of its witnesses",
			"remote", conn.RemoteAddr().String(), "region", h.region, "peer", peerNode, "peer_region", peerRegion)
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
	case <-m.done:
		conn.Close()
	}
}

// regionsString names the regions this port serves (the answer to a wrong region).
func (m *Mux) regionsString() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	names := make([]string, 0, len(m.regions))
	for r := range m.regions {
		names = append(names, r)
	}
	slices.Sort(names)
	out := strings.Join(names, ",")
	if len(out) > maxRegionLen {
		out = out[:maxRegionLen]
	}
	return out
}

// PeerIdentifier is implemented by a ConnAuth that can name the peer of a connection
// it authenticated (mutual TLS: the certificate's node and region). The Raft port then
// admits a peer of another region only into a group that lists it as a witness.
type PeerIdentifier interface {
	PeerIdentity(conn net.Conn) (node, region string, ok bool)
}

// streamLayer is one region group's raft.StreamLayer on a Mux: Raft connections of
// its region arrive on Accept; control connections are served with its handler.
type streamLayer struct {
	mux    *Mux
	region string
	admit  func(node, region string) bool

	raftCh chan net.Conn
	done   chan struct{}
	once   sync.Once

	mu      sync.Mutex // guards handler
	handler func(ControlRequest) ControlResponse
}

var _ raft.StreamLayer = (*streamLayer)(nil)

func (s *streamLayer) serveControl(conn net.Conn) {
	defer conn.Close()
	h := newCodec()
	req, err := decodeControlRequest(h, bufio.NewReader(io.LimitReader(conn, maxControlLen)))
	if err != nil {
		s.mux.log.Debug("bad control request", "remote", conn.RemoteAddr().String(), "err", err)
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
	case <-s.mux.done:
		return nil, net.ErrClosed
	}
}

// Close ends this group's Accept; the port itself stays open for the other groups.
func (s *streamLayer) Close() error {
	s.once.Do(func() { close(s.done) })
	return nil
}

func (s *streamLayer) Addr() net.Addr { return s.mux.advertise }

func (s *streamLayer) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	return dialRegion(ctx, s.mux.auth, string(addr), s.region, modeRaft)
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
	sl *streamLayer
}

func (c *tcpControl) Serve(h func(ControlRequest) ControlResponse) {
	c.sl.mu.Lock()
	c.sl.handler = h
	c.sl.mu.Unlock()
}

func (c *tcpControl) Call(ctx context.Context, addr string, req ControlRequest) (ControlResponse, error) {
	conn, err := dialRegion(ctx, c.sl.mux.auth, addr, c.sl.region, modeControl)
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
