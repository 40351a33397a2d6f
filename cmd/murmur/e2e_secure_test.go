package main

import (
	"bufio"
	"crypto/rand"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/murmur-edge/murmur/agent/secure"
)

// pki writes a CA and node certificates into a directory, as `murmur tls` does.
type pki struct {
	t         *testing.T
	dir       string
	caCert    []byte
	caKey     []byte
	caFile    string
	certFiles map[string][2]string // node -> cert, key
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	dir := t.TempDir()
	c, k, err := secure.NewCA(rand.Reader, time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	p := &pki{t: t, dir: dir, caCert: c, caKey: k, caFile: filepath.Join(dir, "ca.pem"), certFiles: map[string][2]string{}}
	p.write(p.caFile, c)
	return p
}

func (p *pki) write(path string, b []byte) {
	p.t.Helper()
	if err := os.WriteFile(path, b, 0o600); err != nil {
		p.t.Fatal(err)
	}
}

// issue writes (or overwrites) node's certificate and key, valid from now-age.
func (p *pki) issue(node, region string, age, validity time.Duration) [2]string {
	p.t.Helper()
	c, k, err := secure.NewNodeCert(rand.Reader, p.caCert, p.caKey, secure.Identity{Node: node, Region: region}, time.Now().Add(-age), validity)
	if err != nil {
		p.t.Fatal(err)
	}
	f := [2]string{filepath.Join(p.dir, node+".pem"), filepath.Join(p.dir, node+"-key.pem")}
	p.write(f[0], c)
	p.write(f[1], k)
	p.certFiles[node] = f
	return f
}

func (p *pki) flags(node string) []string {
	f := p.certFiles[node]
	return []string{"--tls-ca", p.caFile, "--tls-cert", f[0], "--tls-key", f[1]}
}

// metricSum adds up the samples of a metric family on addr's /metrics; name may carry
// some of the labels (`m{a="x"` or `m{a="x"}`).
func metricSum(t *testing.T, addr, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("GET /metrics of %s: %v", addr, err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		match := strings.HasPrefix(line, name+" ") || strings.HasPrefix(line, name+"{")
		if strings.Contains(name, "{") { // a family with some of its labels
			match = strings.HasPrefix(line, strings.TrimSuffix(name, "}"))
		}
		if !match {
			continue
		}
		f := strings.Fields(line)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		sum += v
	}
	return sum
}

// attackerStream is a raft.StreamLayer that dials with whatever credentials an
// attacker has: a TLS certificate (or none) or no TLS at all, then the region hello.
type attackerStream struct {
	tls    *tls.Config // nil: plain TCP
	region string
}

func (s *attackerStream) Dial(addr raft.ServerAddress, timeout time.Duration) (net.Conn, error) {
	c, err := net.DialTimeout("tcp", string(addr), timeout)
	if err != nil {
		return nil, err
	}
	_ = c.SetDeadline(time.Now().Add(timeout))
	if s.tls != nil {
		tc := tls.Client(c, s.tls)
		if err := tc.Handshake(); err != nil {
			c.Close()
			return nil, err
		}
		c = tc
	}
	hello := append([]byte("MRMR"), 1, 'R', byte(len(s.region)))
	if _, err := c.Write(append(hello, s.region...)); err != nil {
		c.Close()
		return nil, err
	}
	ans := make([]byte, 2+len(s.region))
	if _, err := io.ReadFull(c, ans); err != nil {
		c.Close()
		return nil, fmt.Errorf("hello answer: %w", err)
	}
	if ans[0] != 0 {
		c.Close()
		return nil, fmt.Errorf("hello refused: status %d", ans[0])
	}
	_ = c.SetDeadline(time.Time{})
	return c, nil
}
func (s *attackerStream) Accept() (net.Conn, error) { select {} }
func (s *attackerStream) Close() error              { return nil }
func (s *attackerStream) Addr() net.Addr            { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1} }

// forgeAppend connects to a Raft port as attacker and sends an AppendEntries with a
// much higher term and a forged entry: what would depose the coordinator and write
// the log if the port accepted the connection.
func forgeAppend(addr, region string, tlsCfg *tls.Config, term uint64) error {
	tr := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{
		Stream: &attackerStream{tls: tlsCfg, region: region}, MaxPool: 1, Timeout: 3 * time.Second,
	})
	defer tr.Close()
	req := &raft.AppendEntriesRequest{
		RPCHeader: raft.RPCHeader{ID: []byte("attacker"), Addr: []byte("127.0.0.1:1")},
		Term:      term + 100, PrevLogEntry: 0, PrevLogTerm: 0, LeaderCommitIndex: 1 << 40,
		Entries: []*raft.Log{{Index: 1 << 30, Term: term + 100, Type: raft.LogCommand, Data: []byte("forged")}},
	}
	var resp raft.AppendEntriesResponse
	return tr.AppendEntries("victim", raft.ServerAddress(addr), req, &resp)
}

// testKey is a gossip key for secure fleets.
const testKey = "MDEyMzQ1Njc4OWFiY2RlZg==" // "0123456789abcdef"

func raftAddr(p *proc) string { return fmt.Sprintf("127.0.0.1:%d", p.gossipPort()+1) }

// startSecureFleet starts n agents of region plant on loopback with the given extra
// flags per node, and waits until they agree on a coordinator with 3 voters.
func startSecureFleet(t *testing.T, n int, flags func(name string) []string) ([]*proc, string, uint64) {
	t.Helper()
	seedPort := freePort(t)
	seed := fmt.Sprintf("127.0.0.1:%d", seedPort)
	var ps []*proc
	for i := 1; i <= n; i++ {
		name := fmt.Sprintf("s%d", i)
		args := append([]string{"--region", "plant"}, flags(name)...)
		port := seedPort
		if i > 1 {
			args = append(args, "--join", seed)
			port = freePort(t)
		}
		ps = append(ps, startAgent(t, name, port, args...))
	}
	var coord string
	var term uint64
	eventually(t, 60*time.Second, "the fleet agrees on a coordinator with 3 voters", func() bool {
		var ok bool
		coord, term, ok = agreedCoordinator(ps, "plant", 3)
		return ok
	})
	return ps, coord, term
}

func byName(ps []*proc, name string) *proc {
	for _, p := range ps {
		if p.name == name {
			return p
		}
	}
	return nil
}

func TestRealTLSFleetRefusesImpostorsOnRaft(t *testing.T) {
	ca := newPKI(t)
	other := newPKI(t)
	key := "--encrypt=" + testKey
	for _, n := range []string{"s1", "s2", "s3"} {
		ca.issue(n, "plant", 0, time.Hour)
	}
	ps, coord, term := startSecureFleet(t, 3, func(name string) []string { return append(ca.flags(name), key) })
	target := byName(ps, coord)
	// No workload yet: the region's log is quiet once every node holds the same entries.
	lastIndex := map[string]float64{}
	eventually(t, 10*time.Second, "every node holds the same Raft entries", func() bool {
		for _, p := range ps {
			lastIndex[p.name] = metricSum(t, p.http, "murmur_region_last_index")
		}
		return lastIndex["s1"] > 0 && lastIndex["s1"] == lastIndex["s2"] && lastIndex["s2"] == lastIndex["s3"]
	})
	refusedBefore := metricSum(t, target.http, "murmur_secure_refused_total")

	certOf := func(f [2]string) []tls.Certificate {
		c, err := tls.LoadX509KeyPair(f[0], f[1])
		if err != nil {
			t.Fatal(err)
		}
		return []tls.Certificate{c}
	}
	attacker := func(certs []tls.Certificate) *tls.Config {
		return &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13, Certificates: certs}
	}
	attacks := []struct {
		name string
		tls  *tls.Config
	}{
		{"plain TCP, knowing only the region", nil},
		{"TLS without a certificate", attacker(nil)},
		{"a certificate of another CA", attacker(certOf(other.issue("s2", "plant", 0, time.Hour)))},
		{"an expired certificate", attacker(certOf(ca.issue("s9-expired", "plant", 48*time.Hour, time.Hour)))},
		{"a valid certificate of another region", attacker(certOf(ca.issue("x1", "elsewhere", 0, time.Hour)))},
		{"a valid certificate of this region naming a non-member", attacker(certOf(ca.issue("s9", "plant", 0, time.Hour)))},
	}
	for _, at := range attacks {
		if err := forgeAppend(raftAddr(target), "plant", at.tls, term); err == nil {
			t.Errorf("%s: the coordinator's Raft port took a forged AppendEntries", at.name)
		}
	}
	eventually(t, 10*time.Second, "every attack counted as a refusal on the coordinator", func() bool {
		return metricSum(t, target.http, "murmur_secure_refused_total")-refusedBefore >= float64(len(attacks))
	})
	// The same impostors on the gossip port's TCP streams (push/pull, intent bodies,
	// assignments): refused before memberlist reads a byte. (The TLS-valid
	// certificates of another region or of a non-member are fleet certificates, which
	// gossip accepts by design: the Raft port is where a region's membership counts.)
	gossipBefore := metricSum(t, target.http, `murmur_secure_refused_total{channel="gossip"`)
	for _, at := range attacks[:4] {
		c, err := net.DialTimeout("tcp", target.gossip, 3*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		if at.tls != nil {
			tc := tls.Client(c, at.tls)
			_ = tc.Handshake()
			c = tc
		}
		_, _ = c.Write([]byte{6, 0, 0, 0, 0, 0, 0, 0}) // a push/pull header, were the stream open
		if _, err := c.Read(make([]byte, 1)); err == nil {
			t.Errorf("%s: the gossip port answered on an unauthenticated stream", at.name)
		}
		c.Close()
	}
	eventually(t, 10*time.Second, "the gossip refusals are counted", func() bool {
		return metricSum(t, target.http, `murmur_secure_refused_total{channel="gossip"`)-gossipBefore >= 4
	})
	if c, tm, ok := agreedCoordinator(ps, "plant", 3); !ok || c != coord || tm != term {
		t.Errorf("after the attacks the coordinator is %q in term %d (agreed %v), want %s in term %d", c, tm, ok, coord, term)
	}
	for _, p := range ps {
		if got := metricSum(t, p.http, "murmur_region_last_index"); got != lastIndex[p.name] {
			t.Errorf("%s's Raft last index moved from %v to %v during the attacks", p.name, lastIndex[p.name], got)
		}
	}
	// The fleet still works: a push reaches every node.
	postIntent(t, ps[1].http, workloadYAML("after", 1), "?wait=fleet")
	if !strings.Contains(target.logs(), "agent connection refused") {
		t.Error("the coordinator's log does not name the refused connections")
	}
}

func TestRealKeyOnlyFleetRefusesRaftWithoutTheKey(t *testing.T) {
	ps, coord, term := startSecureFleet(t, 3, func(string) []string { return []string{"--encrypt=" + testKey} })
	target := byName(ps, coord)
	before := metricSum(t, target.http, "murmur_secure_refused_total")
	if err := forgeAppend(raftAddr(target), "plant", nil, term); err == nil {
		t.Fatal("the Raft port took a forged AppendEntries from a client without the gossip key")
	}
	eventually(t, 10*time.Second, "the refusal is counted", func() bool {
		return metricSum(t, target.http, "murmur_secure_refused_total") > before
	})
	if c, tm, ok := agreedCoordinator(ps, "plant", 3); !ok || c != coord || tm != term {
		t.Errorf("after the attack the coordinator is %q in term %d, want %s in term %d", c, tm, coord, term)
	}
	var st struct {
		Security struct {
			Mode string `json:"mode"`
		} `json:"security"`
	}
	if err := getJSON(target.http, "/v1/status", &st); err != nil || st.Security.Mode != "key" {
		t.Errorf("/v1/status security mode %q (%v), want key", st.Security.Mode, err)
	}
}

// Rotating the whole PKI — a new CA, new node certificates, the old CA retired — on a
// running fleet with SIGHUP: no leadership change and no failed push.
func TestRealCertificateRotationKeepsTheFleet(t *testing.T) {
	ca := newPKI(t)
	for _, n := range []string{"s1", "s2", "s3"} {
		ca.issue(n, "plant", 0, time.Hour)
	}
	ps, coord, term := startSecureFleet(t, 3, func(name string) []string { return append(ca.flags(name), "--encrypt="+testKey) })
	hupAll := func() {
		for _, p := range ps {
			if err := p.cmd.Process.Signal(syscall.SIGHUP); err != nil {
				t.Fatal(err)
			}
		}
	}
	reloads := func() float64 {
		var n float64
		for _, p := range ps {
			n += metricSum(t, p.http, `murmur_tls_reloads_total{result="ok"}`)
		}
		return n
	}
	next := newPKI(t)
	oldCA := ca.caCert
	steps := []struct {
		name  string
		apply func()
	}{
		{"trust both CAs", func() { ca.write(ca.caFile, append(append([]byte{}, oldCA...), next.caCert...)) }},
		{"new node certificates from the new CA", func() {
			for _, n := range []string{"s1", "s2", "s3"} {
				f := next.issue(n, "plant", 0, 2*time.Hour)
				cb, _ := os.ReadFile(f[0])
				kb, _ := os.ReadFile(f[1])
				ca.write(ca.certFiles[n][0], cb)
				ca.write(ca.certFiles[n][1], kb)
			}
		}},
		{"retire the old CA", func() { ca.write(ca.caFile, next.caCert) }},
	}
	pushes := 0
	for i, st := range steps {
		st.apply()
		hupAll()
		eventually(t, 10*time.Second, st.name+": every node reloaded", func() bool { return reloads() >= float64(3*(i+1)) })
		// Each push's body travels on new gossip streams, made with the new files.
		for j := 0; j < 3; j++ {
			postIntent(t, ps[(i+j)%3].http, workloadYAML(fmt.Sprintf("rot-%d-%d", i, j), 1), "?wait=fleet")
			pushes++
		}
	}
	if c, tm, ok := agreedCoordinator(ps, "plant", 3); !ok || c != coord || tm != term {
		t.Errorf("after the rotation the coordinator is %q in term %d, want %s in term %d (no leadership change)", c, tm, coord, term)
	}
	for _, p := range ps {
		if n := metricSum(t, p.http, `murmur_tls_reloads_total{result="failed"}`); n != 0 {
			t.Errorf("%s: %v failed reloads", p.name, n)
		}
	}
	t.Logf("%d pushes through a full CA rotation", pushes)
}

// An agent that advertises a non-loopback address runs without TLS only with
// --insecure, and then says so: status, metric, log.
func TestRealInsecureIsVisible(t *testing.T) {
	port := freePort(t)
	p := startAgent(t, "i1", port, "--advertise", fmt.Sprintf("10.255.0.1:%d", port), "--insecure")
	var st struct {
		Security struct {
			Mode     string `json:"mode"`
			Insecure bool   `json:"insecure"`
		} `json:"security"`
	}
	eventually(t, 20*time.Second, "the agent answers /v1/status", func() bool { return getJSON(p.http, "/v1/status", &st) == nil })
	if !st.Security.Insecure || st.Security.Mode != "none" {
		t.Errorf("status security %+v, want insecure with mode none", st.Security)
	}
	if v := metricSum(t, p.http, "murmur_insecure"); v != 1 {
		t.Errorf("murmur_insecure = %v, want 1", v)
	}
	eventually(t, 10*time.Second, "the log warns about --insecure", func() bool {
		return strings.Contains(p.logs(), "running with --insecure")
	})
}
