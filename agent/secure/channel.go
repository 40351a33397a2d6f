package secure

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Mode is how a fleet authenticates its agents' connections.
type Mode string

// Modes, strongest first.
const (
	ModeTLS  Mode = "tls"  // mutual TLS 1.3 with node certificates
	ModeKey  Mode = "key"  // challenge-response on the gossip key
	ModeNone Mode = "none" // nothing: loopback fleets and --insecure
)

// HandshakeTimeout bounds each side's handshake.
const HandshakeTimeout = 5 * time.Second

// Config configures an Authenticator.
type Config struct {
	// TLS, when set, makes every connection mutual TLS 1.3.
	TLS *Source
	// Keys returns the gossip keyring, primary key first. Used when TLS is nil; no keys
	// means no authentication (ModeNone).
	Keys func() [][]byte

	Logger     *slog.Logger
	Registerer prometheus.Registerer // nil: metrics are not registered
}

// Authenticator makes Channels. Safe for concurrent use.
type Authenticator struct {
	tls      *Source
	keys     func() [][]byte
	log      *slog.Logger
	refused  *prometheus.CounterVec
	accepted *prometheus.CounterVec
	mu       sync.Mutex // guards sessions and ticketKey
	// sessions caches the TLS sessions of peers, keyed by address, for resumption.
	sessions tls.ClientSessionCache
	// ticketKey encrypts the session tickets this node issues. Random per process and
	// replaced by ResetSessions: a restart or a reload makes peers handshake in full.
	ticketKey [32]byte
}

// New builds an Authenticator and registers its metrics.
func New(cfg Config) (*Authenticator, error) {
	a := &Authenticator{tls: cfg.TLS, keys: cfg.Keys, log: cfg.Logger,
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "murmur_secure_refused_total",
			Help: "Agent-to-agent connections refused by authentication, by channel (raft, gossip) and reason."}, []string{"channel", "reason"}),
		accepted: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "murmur_secure_handshakes_total",
			Help: "Agent-to-agent connections authenticated, by channel, mode and side (client, server)."}, []string{"channel", "mode", "side"}),
	}
	if a.log == nil {
		a.log = slog.New(slog.DiscardHandler)
	}
	if err := a.ResetSessions(); err != nil {
		return nil, err
	}
	if a.keys == nil {
		a.keys = func() [][]byte { return nil }
	}
	if cfg.Registerer != nil {
		for _, c := range []prometheus.Collector{a.refused, a.accepted} {
			if err := cfg.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("register secure metrics: %w", err)
			}
		}
	}
	return a, nil
}

// ResetSessions forgets every TLS session this node could resume and every ticket it
// issued, so the next connections in both directions handshake in full with the
// certificates on disk now. The agent calls it after a certificate reload: a resumed
// session carries the certificates of its first handshake, which a CA rotation may
// have retired.
func (a *Authenticator) ResetSessions() error {
	var key [32]byte
	if _, err := rand.Read(key[:]); err != nil {
		return fmt.Errorf("session ticket key: %w", err)
	}
	a.mu.Lock()
	a.sessions, a.ticketKey = tls.NewLRUClientSessionCache(512), key
	a.mu.Unlock()
	return nil
}

func (a *Authenticator) sessionState() (tls.ClientSessionCache, [32]byte) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.sessions, a.ticketKey
}

// Mode is the mode connections use now.
func (a *Authenticator) Mode() Mode {
	switch {
	case a.tls != nil:
		return ModeTLS
	case len(a.keys()) > 0:
		return ModeKey
	default:
		return ModeNone
	}
}

// maxPending bounds the server handshakes of one channel in progress at once. When it is
// reached the oldest is closed: real handshakes take milliseconds, so whoever holds the
// oldest ones open is stalling, and a new connection still gets its turn.
const maxPending = 64

// pendingSet tracks the server handshakes in progress of one channel.
type pendingSet struct {
	mu    sync.Mutex
	conns map[net.Conn]time.Time
}

// add registers c, closing the oldest pending handshake if the set is full.
func (p *pendingSet) add(c net.Conn) (evicted bool) {
	p.mu.Lock()
	var oldest net.Conn
	if len(p.conns) >= maxPending {
		var at time.Time
		for pc, t := range p.conns {
			if oldest == nil || t.Before(at) {
				oldest, at = pc, t
			}
		}
		delete(p.conns, oldest)
	}
	p.conns[c] = time.Now()
	p.mu.Unlock()
	if oldest != nil {
		oldest.Close() // its handshake fails and counts as incomplete
	}
	return oldest != nil
}

func (p *pendingSet) remove(c net.Conn) {
	p.mu.Lock()
	delete(p.conns, c)
	p.mu.Unlock()
}

// warnEvery limits refusal warnings to one per channel and reason in this period (the
// rest go to debug), so a flood of bad connections cannot fill a device's storage
// with logs. The counter counts every one.
const warnEvery = 10 * time.Second

// Channel is one kind of connection (the Raft port of a region, gossip streams) with
// its own purpose string, bound into the key handshake, and its own check of the
// peer's certificate identity.
type Channel struct {
	a       *Authenticator
	name    string // metric label: raft, gossip
	purpose string
	check   func(Identity) error
	pending *pendingSet

	mu     sync.Mutex           // guards warned
	warned map[string]time.Time // reason -> last warning
}

// Channel returns a Channel. name labels its metrics; purpose is bound into the key
// handshake (a "raft/site-a" handshake does not pass as "gossip"); check, if not nil,
// decides whether a verified certificate identity may use the channel (both sides
// call it on their peer).
func (a *Authenticator) Channel(name, purpose string, check func(Identity) error) *Channel {
	if check == nil {
		check = func(Identity) error { return nil }
	}
	return &Channel{a: a, name: name, purpose: purpose, check: check,
		pending: &pendingSet{conns: map[net.Conn]time.Time{}}, warned: map[string]time.Time{}}
}

// RefusedError is returned when a peer is refused; Reason is a metric label.
type RefusedError struct {
	Reason string
	Err    error
}

func (e *RefusedError) Error() string { return "refused (" + e.Reason + "): " + e.Err.Error() }
func (e *RefusedError) Unwrap() error { return e.Err }

// Client authenticates a connection this node opened. peer is the node name the
// caller expects (checked against a certificate's identity), or "" when only the
// address is known. The handshake must end by deadline (zero: HandshakeTimeout from
// now); the deadline is cleared after. On error conn is closed.
func (c *Channel) Client(conn net.Conn, peer string, deadline time.Time) (net.Conn, error) {
	return c.run(conn, true, peer, deadline)
}

// Server authenticates a connection this node accepted, within HandshakeTimeout. On
// error conn is closed.
func (c *Channel) Server(conn net.Conn) (net.Conn, error) {
	return c.run(conn, false, "", time.Time{})
}

func (c *Channel) run(conn net.Conn, client bool, peer string, deadline time.Time) (net.Conn, error) {
	mode := c.a.Mode()
	if mode == ModeNone {
		return conn, nil
	}
	side := "server"
	if client {
		side = "client"
	}
	if deadline.IsZero() {
		deadline = time.Now().Add(HandshakeTimeout)
	}
	if !client {
		c.pending.add(conn)
		defer c.pending.remove(conn)
	}
	_ = conn.SetDeadline(deadline)
	var out net.Conn
	var err error
	if mode == ModeTLS {
		out, err = c.tlsHandshake(conn, client, peer)
	} else {
		out, err = c.keyHandshake(conn, client)
	}
	if err != nil {
		conn.Close()
		var re *RefusedError
		switch {
		case errors.As(err, &re):
			c.a.refused.WithLabelValues(c.name, re.Reason).Inc()
			lvl := slog.LevelDebug
			if c.shouldWarn(re.Reason) {
				lvl = slog.LevelWarn
			}
			c.a.log.Log(context.Background(), lvl, "agent connection refused", "channel", c.name, "side", side, "remote", conn.RemoteAddr().String(), "reason", re.Reason, "err", err)
		case !client:
			// A peer that connects and never completes the handshake (a dying node, or
			// someone holding connections open) is a refusal too.
			c.a.refused.WithLabelValues(c.name, "incomplete").Inc()
			c.a.log.Debug("agent connection handshake not completed", "channel", c.name, "remote", conn.RemoteAddr().String(), "err", err)
		default:
			c.a.log.Debug("agent connection handshake failed", "channel", c.name, "side", side, "remote", conn.RemoteAddr().String(), "err", err)
		}
		return nil, fmt.Errorf("%s %s handshake with %s: %w", c.name, mode, conn.RemoteAddr(), err)
	}
	_ = out.SetDeadline(time.Time{})
	c.a.accepted.WithLabelValues(c.name, string(mode), side).Inc()
	return out, nil
}

func (c *Channel) shouldWarn(reason string) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	if last, ok := c.warned[reason]; ok && now.Sub(last) < warnEvery {
		return false
	}
	c.warned[reason] = now
	return true
}

func (c *Channel) tlsHandshake(conn net.Conn, client bool, peer string) (net.Conn, error) {
	var id Identity
	var verr error // the reason VerifyConnection refused, if it did
	check := func(got Identity) error {
		if peer != "" && got.Node != peer {
			verr = &RefusedError{"wrong_node", fmt.Errorf("certificate names %s, expected node %s", got, peer)}
			return verr
		}
		if err := c.check(got); err != nil {
			verr = &RefusedError{"not_allowed", fmt.Errorf("%s: %w", got, err)}
			return verr
		}
		return nil
	}
	// verify's own refusals (no certificate, unknown CA, expired) come back wrapped in
	// the handshake error; classifyTLS unwraps them.
	sessions, ticketKey := c.a.sessionState()
	var tc *tls.Conn
	if client {
		tc = tls.Client(conn, c.a.tls.clientConfig(check, &id, sessions))
	} else {
		tc = tls.Server(conn, c.a.tls.serverConfig(check, &id, ticketKey))
	}
	if err := tc.Handshake(); err != nil {
		if verr != nil {
			return nil, verr
		}
		return nil, classifyTLS(err)
	}
	return tc, nil
}

// classifyTLS turns a crypto/tls or x509 failure into a RefusedError with a reason.
func classifyTLS(err error) error {
	var re *RefusedError
	if errors.As(err, &re) {
		return re
	}
	var ae tls.AlertError
	if errors.As(err, &ae) {
		// The peer refused us (it sent an alert): counted on its side.
		return fmt.Errorf("peer refused the TLS handshake: %w", err)
	}
	var rh tls.RecordHeaderError
	if errors.As(err, &rh) {
		return &RefusedError{"not_tls", fmt.Errorf("peer does not speak TLS (does it run without --tls-*?): %w", err)}
	}
	if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) {
		return err
	}
	var ne net.Error
	if errors.As(err, &ne) {
		return err
	}
	return &RefusedError{"tls", err}
}

// The key handshake. All fields are fixed size:
//
//	client → server: "MRMA" | version 1 | client nonce (32)
//	server → client: server nonce (32) | HMAC(k, "murmur-auth-v1 server" | purpose | cn | sn)
//	client → server: HMAC(k, "murmur-auth-v1 client" | purpose | cn | sn)
//	server → client: status (0 accepted, 1 refused)
//
// The server answers with its primary key; the client accepts a MAC made with any key
// of its ring and answers with that key, which the server checks. So a fleet in the
// middle of a key rotation (install, use, remove) keeps connecting.
const (
	keyMagic    = "MRMA"
	keyVersion  = 1
	nonceLen    = 32
	keyStatusOK = 0
	keyStatusNo = 1
)

var errShortHello = errors.New("bad key handshake hello")

func (c *Channel) mac(key []byte, side string, cn, sn []byte) []byte {
	m := hmac.New(sha256.New, key)
	m.Write([]byte("murmur-auth-v1 " + side + "\x00" + c.purpose + "\x00"))
	m.Write(cn)
	m.Write(sn)
	return m.Sum(nil)
}

func (c *Channel) keyHandshake(conn net.Conn, client bool) (net.Conn, error) {
	if client {
		return c.keyClient(conn)
	}
	return c.keyServer(conn)
}

func (c *Channel) keyClient(conn net.Conn) (net.Conn, error) {
	cn := make([]byte, nonceLen)
	if _, err := rand.Read(cn); err != nil {
		return nil, err
	}
	if _, err := conn.Write(append(append([]byte(keyMagic), keyVersion), cn...)); err != nil {
		return nil, err
	}
	var ans [nonceLen + sha256.Size]byte
	if _, err := io.ReadFull(conn, ans[:]); err != nil {
		return nil, fmt.Errorf("read challenge answer (does the peer use the same gossip key, and TLS the same way?): %w", err)
	}
	sn, smac := ans[:nonceLen], ans[nonceLen:]
	var key []byte
	for _, k := range c.a.keys() {
		if hmac.Equal(c.mac(k, "server", cn, sn), smac) {
			key = k
			break
		}
	}
	if key == nil {
		return nil, &RefusedError{"bad_key", errors.New("peer does not prove a key of this node's gossip keyring")}
	}
	if _, err := conn.Write(c.mac(key, "client", cn, sn)); err != nil {
		return nil, err
	}
	var st [1]byte
	if _, err := io.ReadFull(conn, st[:]); err != nil {
		return nil, fmt.Errorf("read handshake status: %w", err)
	}
	if st[0] != keyStatusOK {
		return nil, errors.New("peer refused this node's key proof")
	}
	return conn, nil
}

func (c *Channel) keyServer(conn net.Conn) (net.Conn, error) {
	cn, err := readKeyHello(conn)
	if errors.Is(err, errShortHello) {
		return nil, err // closed or stalled before a whole hello: counted as incomplete
	}
	if err != nil {
		return nil, &RefusedError{"bad_hello", err}
	}
	keys := c.a.keys()
	if len(keys) == 0 {
		return nil, errors.New("no gossip key")
	}
	sn := make([]byte, nonceLen)
	if _, err := rand.Read(sn); err != nil {
		return nil, err
	}
	if _, err := conn.Write(append(sn, c.mac(keys[0], "server", cn, sn)...)); err != nil {
		return nil, err
	}
	got := make([]byte, sha256.Size)
	if _, err := io.ReadFull(conn, got); err != nil {
		return nil, fmt.Errorf("read key proof: %w", err)
	}
	if !hmac.Equal(c.mac(keys[0], "client", cn, sn), got) {
		_, _ = conn.Write([]byte{keyStatusNo})
		return nil, &RefusedError{"bad_key", errors.New("peer does not prove this node's gossip key")}
	}
	if _, err := conn.Write([]byte{keyStatusOK}); err != nil {
		return nil, err
	}
	return conn, nil
}

// readKeyHello reads the client's hello and returns its nonce (fuzzed by
// FuzzReadKeyHello). A TLS ClientHello here means the peer has certificates and this
// node has none.
func readKeyHello(r io.Reader) ([]byte, error) {
	var hdr [len(keyMagic) + 1 + nonceLen]byte
	if _, err := io.ReadFull(r, hdr[:]); err != nil {
		return nil, fmt.Errorf("%w: %v", errShortHello, err)
	}
	if hdr[0] == 0x16 {
		return nil, errors.New("peer starts TLS, but this node has no --tls-* certificates: configure the same security on every agent")
	}
	if string(hdr[:4]) != keyMagic {
		return nil, errors.New("peer did not start the gossip-key handshake (is it running without --encrypt, or an older murmur?)")
	}
	if hdr[4] != keyVersion {
		return nil, fmt.Errorf("key handshake version %d, want %d", hdr[4], keyVersion)
	}
	return hdr[5:], nil
}

// PeerIdentity names the peer of a connection that Server or Client returned, when the
// channel runs mutual TLS (the certificate's node and region); ok is false otherwise.
// The Raft port uses it to admit a node of another region only into the groups that
// list it as a witness.
func (c *Channel) PeerIdentity(conn net.Conn) (node, region string, ok bool) {
	tc, isTLS := conn.(*tls.Conn)
	if !isTLS {
		return "", "", false
	}
	st := tc.ConnectionState()
	if len(st.PeerCertificates) == 0 {
		return "", "", false
	}
	id, err := IdentityFromCert(st.PeerCertificates[0])
	if err != nil {
		return "", "", false
	}
	return id.Node, id.Region, true
}
