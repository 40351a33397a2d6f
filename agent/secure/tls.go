package secure

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/url"
	"os"
	"sync/atomic"
	"time"
)

// TLSFiles names the PEM files of a node: the fleet CA, its certificate, its key.
type TLSFiles struct {
	CA, Cert, Key string
}

// Set reports whether any file is named.
func (f TLSFiles) Set() bool { return f.CA != "" || f.Cert != "" || f.Key != "" }

// tlsState is one loaded set of files; Source swaps it whole on Reload.
type tlsState struct {
	cert    tls.Certificate
	leaf    *x509.Certificate
	roots   *x509.CertPool
	id      Identity
	modTime [3]time.Time // of CA, cert, key when read
}

// Source holds a node's certificate, key and CA, read from TLSFiles and swapped
// atomically on Reload. Safe for concurrent use.
type Source struct {
	files TLSFiles
	want  Identity
	cur   atomic.Pointer[tlsState]
}

// LoadTLS reads the files and checks that the certificate chains to the CA, is valid
// now, and names want (the agent's --name and --region).
func LoadTLS(files TLSFiles, want Identity) (*Source, error) {
	if files.CA == "" || files.Cert == "" || files.Key == "" {
		return nil, errors.New("give all three of --tls-ca, --tls-cert and --tls-key (make them with 'murmur tls ca create' and 'murmur tls cert create')")
	}
	s := &Source{files: files, want: want}
	st, err := s.read()
	if err != nil {
		return nil, err
	}
	s.cur.Store(st)
	return s, nil
}

// Identity is the node the loaded certificate names.
func (s *Source) Identity() Identity { return s.cur.Load().id }

// NotAfter is when the loaded certificate expires.
func (s *Source) NotAfter() time.Time { return s.cur.Load().leaf.NotAfter }

// Reload reads the files again. On any error the previous certificate stays in use.
func (s *Source) Reload() error {
	st, err := s.read()
	if err != nil {
		return err
	}
	s.cur.Store(st)
	return nil
}

// Changed reports whether any of the files has a modification time other than the one
// it had when last read (a file watch by polling: works for renames and symlink swaps).
func (s *Source) Changed() bool {
	cur := s.cur.Load()
	for i, p := range []string{s.files.CA, s.files.Cert, s.files.Key} {
		fi, err := os.Stat(p)
		if err != nil || !fi.ModTime().Equal(cur.modTime[i]) {
			return true
		}
	}
	return false
}

func (s *Source) read() (*tlsState, error) {
	var st tlsState
	for i, p := range []string{s.files.CA, s.files.Cert, s.files.Key} {
		if fi, err := os.Stat(p); err == nil {
			st.modTime[i] = fi.ModTime()
		}
	}
	caPEM, err := os.ReadFile(s.files.CA)
	if err != nil {
		return nil, fmt.Errorf("--tls-ca: %w", err)
	}
	st.roots = x509.NewCertPool()
	if !st.roots.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("--tls-ca %s: no PEM certificate in it", s.files.CA)
	}
	cert, err := tls.LoadX509KeyPair(s.files.Cert, s.files.Key)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert %s / --tls-key %s: %w", s.files.Cert, s.files.Key, err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("--tls-cert %s: %w", s.files.Cert, err)
	}
	cert.Leaf = leaf
	inter := x509.NewCertPool()
	for _, der := range cert.Certificate[1:] {
		if c, err := x509.ParseCertificate(der); err == nil {
			inter.AddCert(c)
		}
	}
	// Both usages, each checked on its own (KeyUsages is any-of): peers verify this
	// certificate as a client and as a server.
	for _, u := range []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: st.roots, Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{u}}); err != nil {
			return nil, fmt.Errorf("--tls-cert %s is not valid for --tls-ca %s as a TLS client and server certificate: %w", s.files.Cert, s.files.CA, err)
		}
	}
	id, err := IdentityFromCert(leaf)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert %s: %w", s.files.Cert, err)
	}
	if id != s.want {
		return nil, fmt.Errorf("--tls-cert %s names %s, but this agent is %s: make one with 'murmur tls cert create --node %s --region %s'",
			s.files.Cert, id, s.want, s.want.Node, s.want.Region)
	}
	st.cert, st.leaf, st.id = cert, leaf, id
	return &st, nil
}

// verify checks a peer's chain against the current CA and returns its identity.
// Refusals are *RefusedError with the reason no_certificate, expired, unknown_ca,
// bad_certificate or no_identity.
func (s *Source) verify(certs []*x509.Certificate, usage x509.ExtKeyUsage) (Identity, error) {
	if len(certs) == 0 {
		return Identity{}, &RefusedError{"no_certificate", errors.New("peer sent no certificate")}
	}
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: s.cur.Load().roots, Intermediates: inter,
		KeyUsages: []x509.ExtKeyUsage{usage}}); err != nil {
		reason := "bad_certificate"
		var inv x509.CertificateInvalidError
		var ua x509.UnknownAuthorityError
		switch {
		case errors.As(err, &inv) && inv.Reason == x509.Expired:
			reason = "expired"
		case errors.As(err, &ua):
			reason = "unknown_ca"
		}
		return Identity{}, &RefusedError{reason, fmt.Errorf("peer certificate %q is not valid for this fleet's CA: %w", certs[0].Subject.CommonName, err)}
	}
	id, err := IdentityFromCert(certs[0])
	if err != nil {
		return Identity{}, &RefusedError{"no_identity", err}
	}
	return id, nil
}

// serverConfig and clientConfig build TLS 1.3 configurations whose certificate and CA
// are read from the Source at each handshake, and which verify the peer with check.
// Chains are verified in VerifyConnection (against the CA current at that moment)
// rather than by crypto/tls's static pools, so Reload changes the CA too; the
// verification itself is crypto/x509's.
func (s *Source) serverConfig(check func(Identity) error, peer *Identity, ticketKey [32]byte) *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS13,
		ClientAuth: tls.RequestClientCert, // required in VerifyConnection, which names the refusal
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return &s.cur.Load().cert, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := s.verify(cs.PeerCertificates, x509.ExtKeyUsageClientAuth)
			if err == nil {
				err = check(id)
			}
			*peer = id
			return err
		},
	}
	// One config per connection (VerifyConnection records that connection's peer), so
	// the ticket key is the Authenticator's: a client's next connection resumes.
	cfg.SetSessionTicketKeys([][32]byte{ticketKey})
	return cfg
}

func (s *Source) clientConfig(check func(Identity) error, peer *Identity, cache tls.ClientSessionCache) *tls.Config {
	return &tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // verified in VerifyConnection: chain against the CA, then identity
		// No ServerName: the session cache is then keyed by the peer's address, so each
		// peer's ticket is offered to that peer only, and a reconnect resumes (no
		// certificates on the wire, no signatures) instead of handshaking in full.
		// VerifyConnection still verifies the chain from the session. Streams that are
		// only written (memberlist's SendReliable) close before the server's ticket
		// arrives, so mostly request/answer streams and Raft connections resume.
		ClientSessionCache: cache,
		GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			return &s.cur.Load().cert, nil
		},
		VerifyConnection: func(cs tls.ConnectionState) error {
			id, err := s.verify(cs.PeerCertificates, x509.ExtKeyUsageServerAuth)
			if err == nil {
				err = check(id)
			}
			*peer = id
			return err
		},
	}
}

// --- Operator tooling: `murmur tls ca create` and `murmur tls cert create`.

// NewCA makes a self-signed ECDSA P-256 CA valid from now for validity.
func NewCA(random io.Reader, now time.Time, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), random)
	if err != nil {
		return nil, nil, fmt.Errorf("generate CA key: %w", err)
	}
	serial, err := newSerial(random)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "murmur fleet CA " + serial.Text(16)[:8], Organization: []string{"murmur"}},
		NotBefore:             now.Add(-time.Minute),
		NotAfter:              now.Add(validity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(random, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create CA certificate: %w", err)
	}
	return encodePair(der, key)
}

// NewNodeCert makes a certificate for id signed by the CA in caCertPEM/caKeyPEM,
// usable as TLS client and server, valid from now for validity.
func NewNodeCert(random io.Reader, caCertPEM, caKeyPEM []byte, id Identity, now time.Time, validity time.Duration) (certPEM, keyPEM []byte, err error) {
	if err := id.Validate(); err != nil {
		return nil, nil, err
	}
	ca, caKey, err := parseCA(caCertPEM, caKeyPEM)
	if err != nil {
		return nil, nil, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), random)
	if err != nil {
		return nil, nil, fmt.Errorf("generate node key: %w", err)
	}
	serial, err := newSerial(random)
	if err != nil {
		return nil, nil, err
	}
	u, err := url.Parse(id.URI())
	if err != nil {
		return nil, nil, fmt.Errorf("identity uri: %w", err)
	}
	notAfter := now.Add(validity)
	if notAfter.After(ca.NotAfter) {
		notAfter = ca.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: id.Node, OrganizationalUnit: []string{"region " + id.Region}, Organization: []string{"murmur"}},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		URIs:         []*url.URL{u},
		DNSNames:     []string{id.Node},
	}
	der, err := x509.CreateCertificate(random, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return nil, nil, fmt.Errorf("sign node certificate: %w", err)
	}
	return encodePair(der, key)
}

func parseCA(certPEM, keyPEM []byte) (*x509.Certificate, any, error) {
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, nil, fmt.Errorf("CA certificate and key: %w", err)
	}
	ca, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, nil, fmt.Errorf("CA certificate: %w", err)
	}
	if !ca.IsCA {
		return nil, nil, errors.New("CA certificate is not a CA (make one with 'murmur tls ca create')")
	}
	return ca, pair.PrivateKey, nil
}

func newSerial(random io.Reader) (*big.Int, error) {
	n, err := rand.Int(random, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, fmt.Errorf("certificate serial: %w", err)
	}
	return n.Add(n, big.NewInt(1)), nil
}

func encodePair(der []byte, key *ecdsa.PrivateKey) ([]byte, []byte, error) {
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kb}), nil
}
