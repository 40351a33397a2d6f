package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// The netns harness gives every agent its own network stack, so tests can cut and heal
// real links between agents (docs: DESIGN.md, "How we test").
//
//	root namespace                         namespace mm-<pid>-<tag>-<i>
//	  bridge mm-<tag>-br  10.A.B.1/24  ──  veth mm-<tag>-<i>  ══  eth0 10.A.B.<i+1>/24, lo
//	  ebtables chain mm-<tag> (cuts)         murmur agent: gossip :7946, Raft :7947,
//	  iptables FORWARD -i br -o br ACCEPT                  HTTP 127.0.0.1:7070
//	  HTTP forwarder 127.0.0.1:P ──setns dial──▶ 127.0.0.1:7070 in the namespace
//
// The agents' HTTP API stays on each namespace's loopback (an API beyond loopback needs
// a token, and the test helpers send none): a forwarder in the test process listens on
// the root namespace's loopback and opens each connection from inside the namespace.
// The observer therefore reaches every agent whatever the partition, and proc.http is a
// plain 127.0.0.1 address, so getJSON, members, workloadsOf, assignmentsOf and friends
// work unchanged.
//
// Cuts are ebtables DROP rules between bridge ports, in a chain of the lab's own that
// FORWARD jumps to: frames between a cut node and the others are dropped at the bridge,
// in both directions, ARP included, while the nodes on one side still reach each other
// and the observer (the test process reaches the bridge ports through the bridge's own
// address, which ebtables FORWARD does not see) still reaches everyone. In-flight TCP
// segments are dropped silently, like a pulled cable: connections stall and
// retransmit, no RST. Heal flushes the chain, one call. ebtables works without
// br_netfilter; when br_netfilter is loaded (bridge-nf-call-iptables=1, as Docker
// leaves it), bridged frames also cross iptables FORWARD, whose policy Docker sets to
// DROP, hence the ACCEPT rule for the bridge.
//
// Ownership: every name carries a random tag; the namespace names also carry the pid of
// the test process, links carry it in their alias, the iptables rule in its comment,
// the ebtables chain in its name. newNetLab first sweeps leftovers whose owner process
// is gone (a test binary killed mid-run), never those of a live run.

const (
	netnsPrefix  = "mm-"
	netnsHTTP    = "127.0.0.1:7070" // every agent's API, on its namespace's loopback
	netnsGossip  = 7946
	netnsCapFlag = "cpu=500m,memory=256Mi"
)

// netLab is one bridge and n namespaces; everything it creates is removed in t.Cleanup.
type netLab struct {
	t      *testing.T
	tag    string // random, 6 hex digits
	pid    int    // owner: this test process
	net    string // "10.A.B."
	bridge string
	chain  string // ebtables chain holding the cuts
	key    string // gossip key (base64)
	nodes  []*nsNode
	region string

	mu     sync.Mutex // guards cutSet and history
	cutSet map[string]bool
	// history is every agent process started, restarted ones included (their logs
	// explain a finding after the fact).
	history []*proc
}

// nsNode is one namespace and the agent running in it (restarted agents replace proc).
type nsNode struct {
	name    string // agent name
	ns      string // netns name
	veth    string // bridge side of the veth pair
	ip      string
	dataDir string
	http    string // forwarder address in the root namespace
	proc    *proc  // the current agent process; nil before start
}

// requireNetns skips without root or ip unless MURMUR_REQUIRE_NETNS is set (CI runs
// as root, so there the tests must run).
func requireNetns(t *testing.T) {
	t.Helper()
	var missing []string
	if os.Geteuid() != 0 {
		missing = append(missing, "root")
	}
	for _, tool := range []string{"ip", "ebtables", "iptables"} {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, tool)
		}
	}
	if len(missing) == 0 {
		return
	}
	if os.Getenv("MURMUR_REQUIRE_NETNS") != "" {
		t.Fatalf("MURMUR_REQUIRE_NETNS is set but the netns harness lacks %s", strings.Join(missing, ", "))
	}
	t.Skipf("netns test: needs %s (set MURMUR_REQUIRE_NETNS=1 to make this a failure)", strings.Join(missing, ", "))
}

// run runs a command of the harness and fails the test on error.
func nsRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// try runs a cleanup command and reports whether it worked.
func nsTry(name string, args ...string) (string, bool) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err == nil
}

// newNetLab builds a bridge and n namespaces named <prefix>1..n, each with a veth on
// the bridge. Agents are started with start.
func newNetLab(t *testing.T, n int, prefix, region string) *netLab {
	t.Helper()
	requireNetns(t)
	murmurBin(t) // skips under -short before any network change
	sweepStaleNetns(t)
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	base := t.TempDir() // before destroy is registered, so it is removed after destroy ran
	l := &netLab{t: t, tag: hex.EncodeToString(b), pid: os.Getpid(), key: base64.StdEncoding.EncodeToString(key),
		region: region, cutSet: map[string]bool{}}
	l.bridge = netnsPrefix + l.tag + "-br"
	l.chain = fmt.Sprintf("%s%d-%s", netnsPrefix, l.pid, l.tag)
	l.net = l.pickSubnet()
	alias := fmt.Sprintf("murmur-test pid=%d", l.pid)

	// Cleanup runs in reverse order of registration: the agents (registered by
	// startAgent-like code later) go first, then this, which also kills anything
	// still inside a namespace, then deletes namespaces, links and rules.
	t.Cleanup(l.destroy)

	nsRun(t, "ip", "link", "add", l.bridge, "type", "bridge")
	nsRun(t, "ip", "link", "set", l.bridge, "alias", alias)
	nsRun(t, "ip", "addr", "add", l.net+"1/24", "dev", l.bridge)
	nsRun(t, "ip", "link", "set", l.bridge, "up")
	l.checkRoute()
	nsRun(t, "iptables", "-I", "FORWARD", "1", "-i", l.bridge, "-o", l.bridge, "-m", "comment", "--comment", l.chain, "-j", "ACCEPT")
	nsRun(t, "ebtables", "-N", l.chain, "-P", "RETURN")
	nsRun(t, "ebtables", "-A", "FORWARD", "-j", l.chain) // its rules name this lab's ports only

	for i := 1; i <= n; i++ {
		nd := &nsNode{
			name: fmt.Sprintf("%s%d", prefix, i),
			ns:   fmt.Sprintf("%s%d-%s-%d", netnsPrefix, l.pid, l.tag, i),
			veth: fmt.Sprintf("%s%s-%d", netnsPrefix, l.tag, i),
			ip:   fmt.Sprintf("%s%d", l.net, i+1),
		}
		nd.dataDir = filepath.Join(base, nd.name)
		nsRun(t, "ip", "netns", "add", nd.ns)
		nsRun(t, "ip", "link", "add", nd.veth, "type", "veth", "peer", "name", "eth0", "netns", nd.ns)
		nsRun(t, "ip", "link", "set", nd.veth, "alias", alias)
		nsRun(t, "ip", "link", "set", nd.veth, "master", l.bridge)
		nsRun(t, "ip", "link", "set", nd.veth, "up")
		nsRun(t, "ip", "-n", nd.ns, "addr", "add", nd.ip+"/24", "dev", "eth0")
		nsRun(t, "ip", "-n", nd.ns, "link", "set", "eth0", "up")
		nsRun(t, "ip", "-n", nd.ns, "link", "set", "lo", "up")
		nd.http = l.forward(nd.ns)
		l.nodes = append(l.nodes, nd)
	}
	return l
}

// pickSubnet returns a random 10.A.B. prefix that no route or address of the root
// namespace uses.
func (l *netLab) pickSubnet() string {
	out := nsRun(l.t, "ip", "-4", "route", "show", "table", "all")
	addrs := nsRun(l.t, "ip", "-4", "addr", "show")
	var nets []*net.IPNet
	for _, line := range strings.Split(out+"\n"+addrs, "\n") {
		for _, f := range strings.Fields(line) {
			if !strings.Contains(f, "/") {
				if ip := net.ParseIP(f); ip != nil && ip.To4() != nil {
					f += "/32"
				} else {
					continue
				}
			}
			if _, n, err := net.ParseCIDR(f); err == nil {
				nets = append(nets, n)
			}
		}
	}
	for i := 0; i < 200; i++ {
		var b [2]byte
		_, _ = rand.Read(b[:])
		a := 64 + int(b[0])%160 // 10.64.0.0 - 10.223.255.0: away from the usual 10.0/10.1
		candidate := &net.IPNet{IP: net.IPv4(10, byte(a), b[1], 0).To4(), Mask: net.CIDRMask(24, 32)}
		clash := false
		for _, n := range nets {
			if n.Contains(candidate.IP) || candidate.Contains(n.IP) {
				clash = true
				break
			}
		}
		if !clash {
			return fmt.Sprintf("10.%d.%d.", a, b[1])
		}
	}
	l.t.Fatal("no free 10.x.y.0/24 subnet after 200 picks")
	return ""
}

// checkRoute fails when another interface took the same subnet at the same moment.
func (l *netLab) checkRoute() {
	out := nsRun(l.t, "ip", "-4", "route", "show", l.net+"0/24")
	if n := strings.Count(strings.TrimSpace(out), "\n") + 1; n != 1 || !strings.Contains(out, l.bridge) {
		l.t.Fatalf("subnet %s0/24 is routed %d times (%q): another run took it at the same time", l.net, n, out)
	}
}

// forward serves 127.0.0.1:P in the root namespace, connecting each accepted
// connection to the agent's API inside ns. It returns the address.
func (l *netLab) forward(ns string) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		l.t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]bool{}
	track := func(c net.Conn, on bool) {
		mu.Lock()
		defer mu.Unlock()
		if on {
			conns[c] = true
		} else {
			delete(conns, c)
		}
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				up, err := dialInNetns(ns, netnsHTTP, 2*time.Second)
				if err != nil {
					return
				}
				defer up.Close()
				track(c, true)
				track(up, true)
				defer track(c, false)
				defer track(up, false)
				done := make(chan struct{}, 2)
				go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
				go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
				<-done
			}()
		}
	}()
	l.t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// dialInNetns opens a TCP connection from inside network namespace ns: a socket
// belongs to the namespace of the thread that creates it, so the dial runs on a
// locked OS thread switched into ns and back. If switching back fails, the goroutine
// exits still locked and the runtime discards the thread.
func dialInNetns(ns, addr string, timeout time.Duration) (net.Conn, error) {
	type result struct {
		c   net.Conn
		err error
	}
	ch := make(chan result, 1)
	go func() {
		goruntime.LockOSThread()
		self, err := os.Open(fmt.Sprintf("/proc/self/task/%d/ns/net", syscall.Gettid()))
		if err != nil {
			goruntime.UnlockOSThread()
			ch <- result{nil, err}
			return
		}
		defer self.Close()
		target, err := os.Open("/var/run/netns/" + ns)
		if err != nil {
			goruntime.UnlockOSThread()
			ch <- result{nil, err}
			return
		}
		defer target.Close()
		if err := setns(target); err != nil {
			goruntime.UnlockOSThread()
			ch <- result{nil, fmt.Errorf("setns %s: %w", ns, err)}
			return
		}
		c, err := net.DialTimeout("tcp", addr, timeout)
		if setns(self) == nil {
			goruntime.UnlockOSThread()
		}
		ch <- result{c, err}
	}()
	r := <-ch
	return r.c, r.err
}

func setns(f *os.File) error {
	return unix.Setns(int(f.Fd()), unix.CLONE_NEWNET)
}

// node returns the node named name.
func (l *netLab) node(name string) *nsNode {
	for _, nd := range l.nodes {
		if nd.name == name {
			return nd
		}
	}
	l.t.Fatalf("no node %s in the lab", name)
	return nil
}

// procs are the current agent processes, one per node that has one.
func (l *netLab) procs() []*proc {
	var out []*proc
	for _, nd := range l.nodes {
		if nd.proc != nil {
			out = append(out, nd.proc)
		}
	}
	return out
}

// joinFlags lists every node's gossip address as a seed (an agent skips its own).
func (l *netLab) joinFlags() []string {
	var f []string
	for _, nd := range l.nodes {
		f = append(f, "--join", fmt.Sprintf("%s:%d", nd.ip, netnsGossip))
	}
	return f
}

// startAll starts an agent in every namespace.
func (l *netLab) startAll(extra ...string) []*proc {
	for _, nd := range l.nodes {
		l.start(nd.name, extra...)
	}
	return l.procs()
}

// start runs `ip netns exec NS murmur agent` for the node, on its data dir (so a
// restart keeps its state). ip execs the agent in place: the process of p.cmd is the
// agent, so killHost and the instance cleanup work as for loopback agents. Instances
// inherit the namespace.
func (l *netLab) start(name string, extra ...string) *proc {
	t := l.t
	t.Helper()
	nd := l.node(name)
	gossip := fmt.Sprintf("%s:%d", nd.ip, netnsGossip)
	p := &proc{
		name: nd.name, http: nd.http, gossip: gossip, dataDir: nd.dataDir,
		log: &bytes.Buffer{}, logMu: &sync.Mutex{}, done: make(chan struct{}),
	}
	args := []string{"netns", "exec", nd.ns, murmurBin(t), "agent", "--name", nd.name, "--region", l.region,
		"--bind", gossip, "--http", netnsHTTP, "--data-dir", nd.dataDir, "--capacity", netnsCapFlag,
		"--encrypt", l.key, "--insecure", "--log-level", "debug"}
	args = append(append(args, l.joinFlags()...), extra...)
	p.cmd = exec.Command("ip", args...)
	p.cmd.Stdout = syncBuf{p.logMu, p.log}
	p.cmd.Stderr = syncBuf{p.logMu, p.log}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s in %s: %v", name, nd.ns, err)
	}
	go func() {
		_ = p.cmd.Wait()
		p.exitCode = p.cmd.ProcessState.ExitCode()
		close(p.done)
	}()
	nd.proc = p
	l.mu.Lock()
	l.history = append(l.history, p)
	l.mu.Unlock()
	t.Cleanup(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
		killInstances(p.dataDir)
		if t.Failed() {
			t.Logf("--- log of %s (%s, %s; the last lines above DEBUG):\n%s", p.name, nd.ns, nd.ip, tail(withoutDebug(p.logs()), 60))
			if dir := os.Getenv("MURMUR_E2E_LOGDIR"); dir != "" {
				f := filepath.Join(dir, strings.ReplaceAll(t.Name(), "/", "_")+"-"+p.name+"-"+strconv.Itoa(p.cmd.Process.Pid)+".log")
				_ = os.WriteFile(f, []byte(p.logs()), 0o644)
			}
		}
	})
	return p
}

// killInstances kills the instance process groups a data dir records, and those
// running in its instance dirs without a record yet (as startAgentIn's cleanup).
func killInstances(dataDir string) {
	for _, pid := range instancePids(dataDir) {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
	for _, pid := range processesIn(filepath.Join(dataDir, "runtime", "exec")) {
		_ = syscall.Kill(-pid, syscall.SIGKILL)
	}
}

// restart kills the node's agent and its instances (killHost) and starts it again on
// the same data dir, in its namespace as it is (cut or not).
func (l *netLab) reboot(name string, extra ...string) *proc {
	l.t.Helper()
	nd := l.node(name)
	if nd.proc != nil {
		killHost(l.t, nd.proc)
	}
	return l.start(name, extra...)
}

// cut partitions the named nodes from the others: frames between one of them and a
// node outside the set are dropped at the bridge both ways; nodes inside the set
// still reach each other, as do those outside. It replaces any earlier cut. The
// observer (HTTP through the forwarders) is not affected.
func (l *netLab) cut(names ...string) {
	l.t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	in := map[string]bool{}
	for _, n := range names {
		in[l.node(n).name] = true
	}
	// Build the whole rule set first, then swap it in with one ebtables-restore-like
	// sequence: flush + appends. Between the two nothing is cut, never half-cut.
	var rules [][]string
	for _, a := range l.nodes {
		if !in[a.name] {
			continue
		}
		for _, b := range l.nodes {
			if in[b.name] {
				continue
			}
			rules = append(rules, []string{"-A", l.chain, "-i", a.veth, "-o", b.veth, "-j", "DROP"},
				[]string{"-A", l.chain, "-i", b.veth, "-o", a.veth, "-j", "DROP"})
		}
	}
	nsRun(l.t, "ebtables", "-F", l.chain)
	for _, r := range rules {
		nsRun(l.t, "ebtables", r...)
	}
	l.cutSet = in
}

// heal removes every cut: one flush of the lab's chain.
func (l *netLab) heal() {
	l.t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	nsRun(l.t, "ebtables", "-F", l.chain)
	l.cutSet = map[string]bool{}
}

// destroy removes everything the lab created: processes left in its namespaces, the
// namespaces, veths, bridge, iptables and ebtables rules. It keeps going past errors
// and reports them.
func (l *netLab) destroy() {
	var errs []string
	for _, nd := range l.nodes {
		if nd.proc != nil {
			select {
			case <-nd.proc.done:
			default:
				_ = nd.proc.cmd.Process.Kill()
				<-nd.proc.done
			}
		}
		killInstances(nd.dataDir)
	}
	for _, nd := range l.nodes {
		killNetnsPids(nd.ns)
	}
	for _, nd := range l.nodes {
		if out, ok := nsTry("ip", "link", "del", nd.veth); !ok && !strings.Contains(out, "Cannot find") && !strings.Contains(out, "does not exist") {
			errs = append(errs, "ip link del "+nd.veth+": "+out)
		}
		if out, ok := nsTry("ip", "netns", "del", nd.ns); !ok {
			errs = append(errs, "ip netns del "+nd.ns+": "+out)
		}
	}
	if l.bridge != "" {
		nsTry("ip", "link", "del", l.bridge)
	}
	removeIptablesRules(l.chain)
	removeEbtablesChain(l.chain)
	if len(errs) > 0 {
		l.t.Errorf("netns cleanup: %s", strings.Join(errs, "; "))
	}
}

// killNetnsPids SIGKILLs every process still in namespace ns and waits (bounded) until
// none is left, so the namespace really goes away when its name is deleted.
func killNetnsPids(ns string) {
	for i := 0; i < 100; i++ {
		out, ok := nsTry("ip", "netns", "pids", ns)
		if !ok || strings.TrimSpace(out) == "" {
			return
		}
		for _, f := range strings.Fields(out) {
			if pid, err := strconv.Atoi(f); err == nil {
				_ = syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		time.Sleep(20 * time.Millisecond) // waiting for the kernel to reap what we killed; bounded
	}
}

func removeIptablesRules(comment string) {
	out, _ := nsTry("iptables", "-S", "FORWARD")
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "-A FORWARD") || !strings.Contains(line, "--comment "+comment) {
			continue
		}
		args := strings.Fields(strings.Replace(line, "-A FORWARD", "-D FORWARD", 1))
		nsTry("iptables", args...)
	}
}

func removeEbtablesChain(chain string) {
	// ebtables -L prints each rule as its arguments ("-j mm-…"), which -D takes back.
	out, _ := nsTry("ebtables", "-L", "FORWARD")
	for _, line := range strings.Split(out, "\n") {
		if !strings.Contains(line, "-j "+chain) {
			continue
		}
		nsTry("ebtables", append([]string{"-D", "FORWARD"}, strings.Fields(line)...)...)
	}
	nsTry("ebtables", "-F", chain)
	nsTry("ebtables", "-X", chain)
}

// sweepStaleNetns removes what labs of test processes that no longer run left
// behind: namespaces mm-<pid>-…, links aliased "murmur-test pid=<pid>", iptables
// rules and ebtables chains named mm-<pid>-….
func sweepStaleNetns(t *testing.T) {
	t.Helper()
	dead := func(pid int) bool { return pid > 0 && syscall.Kill(pid, 0) == syscall.ESRCH }
	ownerOf := func(name string) int { // mm-<pid>-<tag>...
		if !strings.HasPrefix(name, netnsPrefix) {
			return 0
		}
		f := strings.SplitN(strings.TrimPrefix(name, netnsPrefix), "-", 2)
		pid, _ := strconv.Atoi(f[0])
		return pid
	}
	var swept []string
	out, _ := nsTry("ip", "netns", "list")
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) == 0 {
			continue
		}
		if pid := ownerOf(f[0]); dead(pid) {
			killNetnsPids(f[0])
			nsTry("ip", "netns", "del", f[0])
			swept = append(swept, f[0])
		}
	}
	out, _ = nsTry("ip", "-o", "link", "show")
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 || !strings.HasPrefix(f[1], netnsPrefix) {
			continue
		}
		name := strings.TrimSuffix(strings.SplitN(f[1], "@", 2)[0], ":")
		i := strings.Index(line, "alias murmur-test pid=")
		if i < 0 {
			continue
		}
		pid, _ := strconv.Atoi(strings.Fields(line[i+len("alias murmur-test pid="):])[0])
		if dead(pid) {
			nsTry("ip", "link", "del", name)
			swept = append(swept, name)
		}
	}
	out, _ = nsTry("iptables", "-S", "FORWARD")
	for _, line := range strings.Split(out, "\n") {
		i := strings.Index(line, "--comment "+netnsPrefix)
		if i < 0 {
			continue
		}
		c := strings.Trim(strings.Fields(line[i+len("--comment "):])[0], `"`)
		if dead(ownerOf(c)) {
			removeIptablesRules(c)
			swept = append(swept, "iptables "+c)
		}
	}
	out, _ = nsTry("ebtables", "-L")
	for _, line := range strings.Split(out, "\n") {
		if !strings.HasPrefix(line, "Bridge chain: "+netnsPrefix) {
			continue
		}
		c := strings.TrimSuffix(strings.Fields(strings.TrimPrefix(line, "Bridge chain: "))[0], ",")
		if dead(ownerOf(c)) {
			removeEbtablesChain(c)
			swept = append(swept, "ebtables "+c)
		}
	}
	if len(swept) > 0 {
		t.Logf("netns: swept leftovers of earlier runs: %v", swept)
	}
}

// TestNetnsHarness checks the harness itself: agents in two namespaces join, a cut
// makes them declare each other dead while the observer still reaches both, heal
// brings them back, and cleanup leaves nothing behind.
func TestNetnsHarness(t *testing.T) {
	var lab *netLab
	t.Run("lab", func(t *testing.T) {
		lab = newNetLab(t, 3, "h", "lab")
		ps := lab.startAll()
		for _, p := range ps {
			eventually(t, 30*time.Second, p.name+" sees 3 alive members", func() bool {
				n := 0
				for _, m := range members(p.http) {
					if m.Status == "alive" {
						n++
					}
				}
				return n == 3
			})
		}
		lab.cut("h1")
		eventually(t, 15*time.Second, "h1 and the others see each other dead", func() bool {
			return members(ps[0].http)["h2"].Status == "dead" && members(ps[1].http)["h1"].Status == "dead" &&
				members(ps[1].http)["h3"].Status == "alive"
		})
		lab.heal()
		eventually(t, 30*time.Second, "all alive again after heal", func() bool {
			for _, p := range ps {
				for _, m := range members(p.http) {
					if m.Status != "alive" {
						return false
					}
				}
			}
			return true
		})
	})
	// After the subtest's cleanup: nothing of the lab is left.
	if lab == nil {
		return
	}
	if out, _ := nsTry("ip", "netns", "list"); strings.Contains(out, lab.tag) {
		t.Errorf("namespaces left: %s", out)
	}
	if out, _ := nsTry("ip", "-o", "link", "show"); strings.Contains(out, lab.tag) {
		t.Errorf("links left: %s", out)
	}
	if out, _ := nsTry("iptables", "-S", "FORWARD"); strings.Contains(out, lab.chain) {
		t.Errorf("iptables rules left: %s", out)
	}
	if out, _ := nsTry("ebtables", "-L"); strings.Contains(out, lab.chain) {
		t.Errorf("ebtables chain left: %s", out)
	}
}
