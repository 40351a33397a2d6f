package secure

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

type testCA struct {
	dir       string
	cert, key []byte
	caFile    string
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	dir := t.TempDir()
	c, k, err := NewCA(rand.Reader, time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{dir: dir, cert: c, key: k, caFile: filepath.Join(dir, "ca.pem")}
	write(t, ca.caFile, c)
	return ca
}

func write(t *testing.T, path string, b []byte) {
	t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// issue writes a certificate for id valid from notBefore+1m for validity and returns
// its files (with this CA's ca.pem).
func (ca *testCA) issue(t *testing.T, id Identity, now time.Time, validity time.Duration) TLSFiles {
	t.Helper()
	c, k, err := NewNodeCert(rand.Reader, ca.cert, ca.key, id, now, validity)
	if err != nil {
		t.Fatal(err)
	}
	f := TLSFiles{CA: ca.caFile, Cert: filepath.Join(ca.dir, id.Node+".pem"), Key: filepath.Join(ca.dir, id.Node+"-key.pem")}
	write(t, f.Cert, c)
	write(t, f.Key, k)
	return f
}

func (ca *testCA) source(t *testing.T, id Identity) *Source {
	t.Helper()
	s, err := LoadTLS(ca.issue(t, id, time.Now(), time.Hour), id)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newAuth(t *testing.T, src *Source, keys ...[]byte) (*Authenticator, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	a, err := New(Config{TLS: src, Keys: func() [][]byte { return keys }, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	return a, reg
}

// acceptOne listens on loopback, hands the first connection to serve, and sends
// serve's error on the returned channel. The listener closes with the test.
func acceptOne(t *testing.T, serve func(net.Conn) error) (addr string, done <-chan error) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	ch := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			ch <- err
			return
		}
		ch <- serve(c)
	}()
	return ln.Addr().String(), ch
}

// pair runs a client and a server handshake over a loopback TCP connection and
// returns both errors; on success it checks that bytes flow both ways.
func pair(t *testing.T, client, server *Channel, peer string) (cerr, serr error) {
	t.Helper()
	addr, done := acceptOne(t, func(c net.Conn) error {
		sc, err := server.Server(c)
		if err != nil {
			return err
		}
		defer sc.Close()
		// Echo one line.
		buf := make([]byte, 5)
		_ = sc.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.ReadFull(sc, buf); err != nil {
			return err
		}
		_, err = sc.Write(buf)
		return err
	})
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	cc, cerr := client.Client(raw, peer, time.Time{})
	if cerr == nil {
		defer cc.Close()
		_ = cc.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := cc.Write([]byte("hello")); err != nil {
			cerr = err
		} else {
			buf := make([]byte, 5)
			if _, err := io.ReadFull(cc, buf); err != nil {
				cerr = err // TLS 1.3: a refused client certificate shows on the first read
			} else if string(buf) != "hello" {
				cerr = errors.New("echo mismatch")
			}
		}
	}
	serr = <-done
	return cerr, serr
}

func refusedReason(err error) string {
	var re *RefusedError
	if errors.As(err, &re) {
		return re.Reason
	}
	return ""
}

func TestTLSAcceptsFleetMembers(t *testing.T) {
	ca := newTestCA(t)
	a, _ := newAuth(t, ca.source(t, Identity{"n1", "site-a"}))
	b, _ := newAuth(t, ca.source(t, Identity{"n2", "site-a"}))
	sameRegion := func(id Identity) error {
		if id.Region != "site-a" {
			return errors.New("another region")
		}
		return nil
	}
	cerr, serr := pair(t, a.Channel("raft", "raft/site-a", sameRegion), b.Channel("raft", "raft/site-a", sameRegion), "n2")
	if cerr != nil || serr != nil {
		t.Fatalf("client err %v, server err %v", cerr, serr)
	}
	if got := testutil.ToFloat64(b.accepted.WithLabelValues("raft", "tls", "server")); got != 1 {
		t.Errorf("server handshakes = %v, want 1", got)
	}
}

// attack dials server's channel as an attacker would: TLS 1.3 presenting cert (or
// none), accepting any server certificate. It returns the server's error.
func attack(t *testing.T, server *Channel, cert *tls.Certificate) error {
	t.Helper()
	addr, done := acceptOne(t, func(c net.Conn) error {
		sc, err := server.Server(c)
		if err == nil {
			sc.Close()
		}
		return err
	})
	raw, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	cfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	tc := tls.Client(raw, cfg)
	_ = tc.Handshake()
	_, _ = tc.Read(make([]byte, 1))
	return <-done
}

func TestTLSRefusals(t *testing.T) {
	ca := newTestCA(t)
	other := newTestCA(t)
	server, _ := newAuth(t, ca.source(t, Identity{"n1", "site-a"}))
	members := map[string]bool{"n1": true, "n2": true}
	ch := server.Channel("raft", "raft/site-a", func(id Identity) error {
		if id.Region != "site-a" {
			return errors.New("certificate of region " + id.Region)
		}
		if !members[id.Node] {
			return errors.New("not a member of site-a")
		}
		return nil
	})
	certOf := func(f TLSFiles) *tls.Certificate {
		c, err := tls.LoadX509KeyPair(f.Cert, f.Key)
		if err != nil {
			t.Fatal(err)
		}
		return &c
	}
	cases := []struct {
		name   string
		cert   *tls.Certificate
		reason string
	}{
		{"no certificate", nil, "no_certificate"},
		{"another CA", certOf(other.issue(t, Identity{"n2", "site-a"}, time.Now(), time.Hour)), "unknown_ca"},
		{"expired", certOf(ca.issue(t, Identity{"n2", "site-a"}, time.Now().Add(-48*time.Hour), time.Hour)), "expired"},
		{"another region", certOf(ca.issue(t, Identity{"n2", "site-b"}, time.Now(), time.Hour)), "not_allowed"},
		{"not a member", certOf(ca.issue(t, Identity{"n9", "site-a"}, time.Now(), time.Hour)), "not_allowed"},
		{"a member", certOf(ca.issue(t, Identity{"n2", "site-a"}, time.Now(), time.Hour)), ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := testutil.ToFloat64(server.refused.WithLabelValues("raft", tc.reason))
			err := attack(t, ch, tc.cert)
			if tc.reason == "" {
				if err != nil {
					t.Fatalf("server refused a member: %v", err)
				}
				return
			}
			if got := refusedReason(err); got != tc.reason {
				t.Errorf("server refusal reason %q (%v), want %q", got, err, tc.reason)
			}
			if got := testutil.ToFloat64(server.refused.WithLabelValues("raft", tc.reason)) - before; got != 1 {
				t.Errorf("refusals counted %v, want 1", got)
			}
		})
	}
	// A key-mode client speaking to a TLS port is refused too.
	keyClient, _ := newAuth(t, nil, bytes.Repeat([]byte("k"), 32))
	if _, serr := pair(t, keyClient.Channel("raft", "raft/site-a", nil), ch, ""); refusedReason(serr) != "not_tls" {
		t.Errorf("key client to a TLS server: %v, want a not_tls refusal", serr)
	}
}

func TestClientRefusesAnImpostorServer(t *testing.T) {
	ca := newTestCA(t)
	client, reg := newAuth(t, ca.source(t, Identity{"n1", "site-a"}))
	server, _ := newAuth(t, ca.source(t, Identity{"n3", "site-a"}))
	cerr, _ := pair(t, client.Channel("gossip", "gossip", nil), server.Channel("gossip", "gossip", nil), "n2")
	if got := refusedReason(cerr); got != "wrong_node" {
		t.Fatalf("client error %v (reason %q), want wrong_node", cerr, got)
	}
	if n := testutil.CollectAndCount(reg, "murmur_secure_refused_total"); n != 1 {
		t.Errorf("refusal series = %d, want 1", n)
	}
}

func TestReloadSwapsCertificate(t *testing.T) {
	ca := newTestCA(t)
	id := Identity{"n1", "site-a"}
	files := ca.issue(t, id, time.Now(), time.Hour)
	src, err := LoadTLS(files, id)
	if err != nil {
		t.Fatal(err)
	}
	first := src.NotAfter()
	if src.Changed() {
		t.Fatal("Changed right after load")
	}
	// A new certificate for the same node, written over the old files.
	c, k, err := NewNodeCert(rand.Reader, ca.cert, ca.key, id, time.Now(), 2*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	write(t, files.Cert, c)
	write(t, files.Key, k)
	future := time.Now().Add(time.Minute)
	for _, p := range []string{files.Cert, files.Key} {
		if err := os.Chtimes(p, future, future); err != nil {
			t.Fatal(err)
		}
	}
	if !src.Changed() {
		t.Fatal("Changed is false after the files were replaced")
	}
	if err := src.Reload(); err != nil {
		t.Fatal(err)
	}
	if !src.NotAfter().After(first) {
		t.Errorf("NotAfter %v after reload, want later than %v", src.NotAfter(), first)
	}
	// A certificate for another node is refused and the old one stays.
	wrong := ca.issue(t, Identity{"n2", "site-a"}, time.Now(), time.Hour)
	cb, _ := os.ReadFile(wrong.Cert)
	kb, _ := os.ReadFile(wrong.Key)
	write(t, files.Cert, cb)
	write(t, files.Key, kb)
	if err := src.Reload(); err == nil || !strings.Contains(err.Error(), "names n2") {
		t.Fatalf("reload of another node's certificate: %v, want an error naming n2", err)
	}
	if src.Identity() != id {
		t.Errorf("identity %v after a refused reload, want %v", src.Identity(), id)
	}
}

func TestLoadTLSErrors(t *testing.T) {
	ca := newTestCA(t)
	other := newTestCA(t)
	id := Identity{"n1", "site-a"}
	good := ca.issue(t, id, time.Now(), time.Hour)
	cases := []struct {
		name  string
		files TLSFiles
		want  string
	}{
		{"missing key flag", TLSFiles{CA: good.CA, Cert: good.Cert}, "all three"},
		{"missing CA file", TLSFiles{CA: "/nonexistent/ca.pem", Cert: good.Cert, Key: good.Key}, "--tls-ca"},
		{"another CA", TLSFiles{CA: other.caFile, Cert: good.Cert, Key: good.Key}, "not valid for --tls-ca"},
		{"another node", ca.issue(t, Identity{"n2", "site-a"}, time.Now(), time.Hour), "names n2"},
		{"expired", ca.issue(t, id, time.Now().Add(-48*time.Hour), time.Hour), "expired"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := LoadTLS(tc.files, id)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("LoadTLS: %v, want an error containing %q", err, tc.want)
			}
		})
	}
}

func TestKeyHandshake(t *testing.T) {
	k1 := bytes.Repeat([]byte{1}, 32)
	k2 := bytes.Repeat([]byte{2}, 16)
	cases := []struct {
		name           string
		client, server [][]byte
		purposeC       string
		ok             bool
	}{
		{"same key", [][]byte{k1}, [][]byte{k1}, "raft/a", true},
		{"rotation: client has both, server moved to the new key", [][]byte{k1, k2}, [][]byte{k2, k1}, "raft/a", true},
		{"rotation: server has both, client still on the old", [][]byte{k1}, [][]byte{k1, k2}, "raft/a", true},
		{"wrong key", [][]byte{k2}, [][]byte{k1}, "raft/a", false},
		{"another purpose", [][]byte{k1}, [][]byte{k1}, "gossip", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, _ := newAuth(t, nil, tc.client...)
			s, _ := newAuth(t, nil, tc.server...)
			cerr, serr := pair(t, c.Channel("raft", tc.purposeC, nil), s.Channel("raft", "raft/a", nil), "")
			if tc.ok && (cerr != nil || serr != nil) {
				t.Fatalf("client %v, server %v: want accepted", cerr, serr)
			}
			if !tc.ok && (cerr == nil || serr == nil) {
				t.Fatalf("client %v, server %v: want refused", cerr, serr)
			}
		})
	}
}

func TestKeyServerRefusesPlainAndTLSPeers(t *testing.T) {
	ca := newTestCA(t)
	s, _ := newAuth(t, nil, bytes.Repeat([]byte{1}, 32))
	plain, _ := newAuth(t, nil)
	withTLS, _ := newAuth(t, ca.source(t, Identity{"n1", "a"}))
	for name, c := range map[string]*Authenticator{"no key": plain, "tls": withTLS} {
		t.Run(name, func(t *testing.T) {
			// A plain client writes its payload at once: "hello" plus nothing else is a
			// short hello to the server; pad it so the server reads a whole hello.
			cerr, serr := pair(t, c.Channel("raft", "raft/a", nil), s.Channel("raft", "raft/a", nil), "")
			if serr == nil {
				t.Fatalf("server accepted a %s client (client err %v)", name, cerr)
			}
		})
	}
}

func TestNoneModePassesThrough(t *testing.T) {
	a, _ := newAuth(t, nil)
	if a.Mode() != ModeNone {
		t.Fatalf("mode %s, want none", a.Mode())
	}
	cerr, serr := pair(t, a.Channel("raft", "raft/a", nil), a.Channel("raft", "raft/a", nil), "")
	if cerr != nil || serr != nil {
		t.Fatalf("client %v, server %v", cerr, serr)
	}
}

func TestIdentityURI(t *testing.T) {
	id := Identity{"gw-01.cell_2", "site-a"}
	got, err := ParseIdentityURI(id.URI())
	if err != nil || got != id {
		t.Fatalf("round trip %q: %v, %v", id.URI(), got, err)
	}
	for _, bad := range []string{"", "murmur:node:", "murmur:node:a", "murmur:node::n", "murmur:node:a:b:c", "spiffe://x/y", "murmur:node:a:n\x00"} {
		if _, err := ParseIdentityURI(bad); err == nil {
			t.Errorf("ParseIdentityURI(%q) accepted", bad)
		}
	}
}

func FuzzParseIdentityURI(f *testing.F) {
	f.Add("murmur:node:site-a:n1")
	f.Add("murmur:node:a:b:c")
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseIdentityURI(s)
		if err != nil {
			return
		}
		if id.URI() != s {
			t.Fatalf("%q parsed as %+v, which writes %q", s, id, id.URI())
		}
	})
}

func FuzzReadKeyHello(f *testing.F) {
	f.Add(append([]byte("MRMA\x01"), make([]byte, 32)...))
	f.Add([]byte{0x16, 3, 1})
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := readKeyHello(bytes.NewReader(b))
		if err == nil && (len(n) != nonceLen || !bytes.HasPrefix(b, []byte("MRMA\x01"))) {
			t.Fatalf("accepted %x", b)
		}
	})
}

// FuzzIdentityFromCert feeds certificate bytes (DER) through x509 and the identity
// reader: no panic, and an identity found always validates and round-trips.
func FuzzIdentityFromCert(f *testing.F) {
	c, k, err := NewCA(rand.Reader, time.Now(), time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	nc, _, err := NewNodeCert(rand.Reader, c, k, Identity{"n1", "site-a"}, time.Now(), time.Hour)
	if err != nil {
		f.Fatal(err)
	}
	blk, _ := pem.Decode(nc)
	f.Add(blk.Bytes)
	f.Fuzz(func(t *testing.T, der []byte) {
		cert, err := x509.ParseCertificate(der)
		if err != nil {
			return
		}
		id, err := IdentityFromCert(cert)
		if err != nil {
			return
		}
		if err := id.Validate(); err != nil {
			t.Fatalf("identity %+v from a certificate does not validate: %v", id, err)
		}
		if back, err := ParseIdentityURI(id.URI()); err != nil || back != id {
			t.Fatalf("identity %+v does not round-trip: %+v, %v", id, back, err)
		}
	})
}

// A second connection to the same peer resumes the TLS session (no signature or chain
// work), and the resumed connection is still checked: a peer that stopped passing the
// check is refused.
func TestTLSResumesPerPeerAndStillChecks(t *testing.T) {
	ca := newTestCA(t)
	client, _ := newAuth(t, ca.source(t, Identity{"n1", "a"}))
	server, _ := newAuth(t, ca.source(t, Identity{"n2", "a"}))
	allowed := true
	var mu sync.Mutex
	sch := server.Channel("raft", "raft/a", func(Identity) error {
		mu.Lock()
		defer mu.Unlock()
		if !allowed {
			return errors.New("no longer a member")
		}
		return nil
	})
	cch := client.Channel("raft", "raft/a", nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				sc, err := sch.Server(c)
				if err != nil {
					return
				}
				defer sc.Close()
				b := make([]byte, 1)
				if _, err := sc.Read(b); err == nil {
					_, _ = sc.Write(b)
				}
			}()
		}
	}()
	dial := func() (bool, error) {
		raw, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c, err := cch.Client(raw, "n2", time.Now().Add(5*time.Second))
		if err != nil {
			return false, err
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := c.Write([]byte{1}); err != nil {
			return false, err
		}
		if _, err := c.Read(make([]byte, 1)); err != nil { // also takes the session ticket
			return false, err
		}
		return c.(*tls.Conn).ConnectionState().DidResume, nil
	}
	if resumed, err := dial(); err != nil || resumed {
		t.Fatalf("first connection: resumed=%v err=%v, want a full handshake", resumed, err)
	}
	if resumed, err := dial(); err != nil || !resumed {
		t.Fatalf("second connection: resumed=%v err=%v, want a resumed session", resumed, err)
	}
	mu.Lock()
	allowed = false
	mu.Unlock()
	if _, err := dial(); err == nil {
		t.Fatal("a resumed session skipped the server's check")
	}
}

func TestResetSessionsForcesFullHandshakes(t *testing.T) {
	a, _ := newAuth(t, nil)
	s1, k1 := a.sessionState()
	if err := a.ResetSessions(); err != nil {
		t.Fatal(err)
	}
	s2, k2 := a.sessionState()
	if s1 == s2 || k1 == k2 {
		t.Fatal("ResetSessions kept the session cache or the ticket key")
	}
}

// Connections that never handshake cannot lock a channel: past maxPending the oldest
// stalled one is closed, and a real peer still gets in.
func TestStalledHandshakesDoNotLockTheChannel(t *testing.T) {
	key := bytes.Repeat([]byte{7}, 32)
	server, _ := newAuth(t, nil, key)
	client, _ := newAuth(t, nil, key)
	sch := server.Channel("gossip", "gossip", nil)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	results := make(chan error, 2*maxPending)
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				sc, err := sch.Server(c)
				if err == nil {
					b := make([]byte, 1)
					if _, err = sc.Read(b); err == nil {
						_, err = sc.Write(b)
					}
					sc.Close()
				}
				results <- err
			}()
		}
	}()
	var stalled []net.Conn
	defer func() {
		for _, c := range stalled {
			c.Close()
		}
	}()
	for i := 0; i < maxPending+8; i++ {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		stalled = append(stalled, c) // says nothing
	}
	// The 8 oldest are closed as the set overflows.
	for i := 0; i < 8; i++ {
		if err := <-results; err == nil {
			t.Fatal("a stalled connection passed the handshake")
		}
	}
	raw, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	c, err := client.Channel("gossip", "gossip", nil).Client(raw, "", time.Now().Add(5*time.Second))
	if err != nil {
		t.Fatalf("a real peer was locked out by stalled connections: %v", err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte{1}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Read(make([]byte, 1)); err != nil {
		t.Fatalf("echo through the channel: %v", err)
	}
	if got := testutil.ToFloat64(server.refused.WithLabelValues("gossip", "incomplete")); got < 8 {
		t.Errorf("incomplete handshakes counted %v, want at least 8", got)
	}
}
