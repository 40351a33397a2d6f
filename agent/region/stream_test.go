package region

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/hashicorp/raft"
)

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// A single-node region on the real TCP transport bootstraps alone, and refuses Raft
// traffic and control calls from a node of another region.
// startAlone runs a single-node region on the real TCP transport and data dir until
// the test ends, and returns once it leads.
func startAlone(t *testing.T, name, region, dataDir string) (*Node, string) {
	t.Helper()
	addr := freeAddr(t)
	n, err := New(Config{NodeID: "id-" + name, Name: name, Region: region, RaftBind: addr, DataDir: dataDir, Eligible: true,
		SettlePeriod: 100 * time.Millisecond, Tick: 50 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	})
	n.UpdatePeers([]Peer{{ID: "id-" + name, Name: name, Region: region, RaftAddr: addr, Eligible: true, Alive: true}})
	waitFor(t, 10*time.Second, "single-node region leader", func() (bool, string) { return n.IsLeader(), "" })
	return n, addr
}

func TestTCPRegionIsolation(t *testing.T) {
	n, addr := startAlone(t, "a", "east", t.TempDir())
	if _, err := n.Apply(context.Background(), Place("i", "w", "a")); err != nil {
		t.Fatalf("Apply: %v", err)
	}

	// Same region: the handshake passes and the control port answers.
	eastMux := NewMux(nil, nil, nil, nil, nil)
	eastSL, _ := eastMux.register("east", nil)
	same := &tcpControl{sl: eastSL}
	if resp, err := same.Call(context.Background(), addr, ControlRequest{Kind: CtlProbe, From: "x"}); err != nil || !resp.OK {
		t.Errorf("probe from the same region: %+v, %v", resp, err)
	}
	// Another region: control refused…
	westMux := NewMux(nil, nil, nil, nil, nil)
	westSL, _ := westMux.register("west", nil)
	other := &tcpControl{sl: westSL}
	if _, err := other.Call(context.Background(), addr, ControlRequest{Kind: CtlProbe, From: "x"}); !errors.Is(err, ErrWrongRegion) {
		t.Errorf("probe from another region: err = %v, want ErrWrongRegion", err)
	}
	// …and so are Raft RPCs, through a real NetworkTransport of region west.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	mux := NewMux(ln, ln.Addr(), nil, testLogger(t), nil)
	go mux.Serve()
	defer mux.Close()
	sl, err := mux.register("west", nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := raft.NewNetworkTransportWithConfig(&raft.NetworkTransportConfig{Stream: sl, MaxPool: 1, Timeout: time.Second})
	defer tr.Close()
	var resp raft.AppendEntriesResponse
	err = tr.AppendEntries("id-a", raft.ServerAddress(addr), &raft.AppendEntriesRequest{RPCHeader: raft.RPCHeader{ID: []byte("id-w"), Addr: []byte(ln.Addr().String())}, Term: 99}, &resp)
	if !errors.Is(err, ErrWrongRegion) {
		t.Errorf("AppendEntries from another region: err = %v, want ErrWrongRegion", err)
	}
	if got := metricValue(n.m.rejected); got < 2 {
		t.Errorf("rejected connections = %v, want >= 2", got)
	}
	if !n.IsLeader() {
		t.Error("a foreign AppendEntries with a higher term deposed the leader")
	}
	// Garbage on the Raft port is refused without harm.
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("GET / HTTP/1.1\r\n\r\n"))
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	b := make([]byte, 1)
	if _, err := c.Read(b); err != nil || b[0] != helloBad {
		t.Errorf("garbage hello answered %v, %v; want status %d", b, err, helloBad)
	}
	c.Close()
}

func TestNewRejectsBadConfig(t *testing.T) {
	tests := []struct {
		cfg  Config
		want string
	}{
		{Config{Name: "a", Region: "r", DataDir: "d", RaftBind: "127.0.0.1:1"}, "node id is required"},
		{Config{NodeID: "i", Name: "a", DataDir: "d", RaftBind: "127.0.0.1:1"}, "region is required"},
		{Config{NodeID: "i", Name: "a", Region: "r", DataDir: "d", RaftBind: "0.0.0.0:7947"}, "set --advertise"},
		{Config{NodeID: "i", Name: "a", Region: "r", DataDir: "d", RaftBind: "127.0.0.1:1", Voters: 2}, "--voters 2"},
		{Config{NodeID: "i", Name: "a", Region: "r", RaftBind: "127.0.0.1:1"}, "data dir is required"},
		{Config{NodeID: "i", Name: "a", Region: "r", DataDir: "d", RaftBind: "127.0.0.1:1", Timing: Timing{HeartbeatTimeout: 100 * time.Millisecond, HeartbeatInterval: 50 * time.Millisecond}}, "under half the heartbeat timeout"},
		{Config{NodeID: "i", Name: "a", Region: "r", DataDir: "d", RaftBind: "127.0.0.1:1", Timing: Timing{HeartbeatTimeout: 300 * time.Millisecond, HeartbeatInterval: 20 * time.Millisecond}}, "at least a tenth"},
	}
	for _, tc := range tests {
		_, err := New(tc.cfg)
		if err == nil || !bytes.Contains([]byte(err.Error()), []byte(tc.want)) {
			t.Errorf("New(%+v) err = %v, want it to mention %q", tc.cfg, err, tc.want)
		}
	}
}

func TestDataDirOfAnotherRegionRefused(t *testing.T) {
	dir := t.TempDir()
	for i, region := range []string{"east", "west"} {
		n, err := New(Config{NodeID: "i", Name: "a", Region: region, DataDir: dir, RaftBind: freeAddr(t)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		if i == 0 {
			cancel() // first run: creates the marker and stops at once
		}
		err = n.Run(ctx)
		cancel()
		if i == 1 && (err == nil || !bytes.Contains([]byte(err.Error()), []byte(`belongs to region "east"`))) {
			t.Errorf("Run in another region's data dir: err = %v", err)
		}
	}
}

func FuzzReadHello(f *testing.F) {
	var good bytes.Buffer
	writeHello(&good, hello{mode: modeRaft, region: "east"})
	f.Add(good.Bytes())
	f.Add([]byte("MRMR\x01C\x00"))
	f.Add([]byte("MRMR\x02R\x05ab"))
	f.Add([]byte("GET / HTTP/1.1"))
	f.Fuzz(func(t *testing.T, b []byte) {
		h, err := readHello(bytes.NewReader(b))
		if err != nil {
			return
		}
		var out bytes.Buffer
		if err := writeHello(&out, h); err != nil {
			t.Fatalf("re-encode %+v: %v", h, err)
		}
		if !bytes.HasPrefix(b, out.Bytes()) {
			t.Fatalf("hello %+v re-encodes to %x, input %x", h, out.Bytes(), b)
		}
	})
}

func FuzzControlRequest(f *testing.F) {
	for _, req := range []ControlRequest{{Kind: CtlProbe, From: "a"}, {Kind: CtlPropose, From: "a", List: []string{"a", "b", "c"}}} {
		var b []byte
		if err := encodeForTest(&b, req); err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{0x83, 0xa1, 'k', 0x02, 0xa1, 'l', 0xdc, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		req, err := decodeControlRequest(newCodec(), bytes.NewReader(b))
		if err != nil {
			return
		}
		if req.Kind < CtlProbe || req.Kind > CtlRelease || len(req.List) > 16 {
			t.Fatalf("decoder let through %+v", req)
		}
		// And the handler answers anything that decodes without panicking.
		n, err := New(Config{NodeID: "i", Name: "a", Region: "r", Eligible: true, inmemStores: true, RaftBind: "127.0.0.1:1"})
		if err != nil {
			t.Fatal(err)
		}
		_ = n.handleControl(req)
	})
}

func TestControlRequestDecodeErrors(t *testing.T) {
	for _, req := range []ControlRequest{{Kind: 0}, {Kind: 9}, {Kind: CtlPropose, List: []string{""}}} {
		var b []byte
		if err := encodeForTest(&b, req); err != nil {
			t.Fatal(err)
		}
		if _, err := decodeControlRequest(newCodec(), bytes.NewReader(b)); err == nil {
			t.Errorf("decodeControlRequest(%+v) accepted", req)
		}
	}
}

func encodeForTest(b *[]byte, v any) error { return codec.NewEncoderBytes(b, newCodec()).Encode(v) }

// Three nodes on real TCP (handshake, control calls for the bootstrap promises,
// NetworkTransport): one group forms, commits, and survives the loss of its leader.
func TestTCPThreeNodeRegion(t *testing.T) {
	type tn struct {
		id, addr string
		n        *Node
		cancel   context.CancelFunc
		done     chan error
	}
	var nodes []*tn
	for i := range 3 {
		x := &tn{id: fmt.Sprintf("tcp-%d", i), addr: freeAddr(t)}
		n, err := New(Config{NodeID: x.id, Name: x.id, Region: "east", RaftBind: x.addr, DataDir: t.TempDir(), Eligible: true,
			SettlePeriod: 200 * time.Millisecond, Tick: 50 * time.Millisecond, DeadGrace: time.Hour, Logger: testLogger(t).With("node", x.id)})
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		x.n, x.cancel, x.done = n, cancel, make(chan error, 1)
		go func() { x.done <- n.Run(ctx) }()
		nodes = append(nodes, x)
	}
	var mu sync.Mutex // guards dead
	dead := map[string]bool{}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			mu.Lock()
			var peers []Peer
			for _, x := range nodes {
				peers = append(peers, Peer{ID: x.id, Name: x.id, Region: "east", RaftAddr: x.addr, Eligible: true, Alive: !dead[x.id], State: x.n.PublishedState()})
			}
			mu.Unlock()
			for _, x := range nodes {
				x.n.UpdatePeers(peers)
			}
		}
	}()
	defer func() {
		close(stop)
		wg.Wait()
		for _, x := range nodes {
			mu.Lock()
			d := dead[x.id]
			mu.Unlock()
			if !d {
				x.cancel()
				<-x.done
			}
		}
	}()
	leaderOf := func(skip string) *tn {
		for _, x := range nodes {
			if x.id != skip && x.n.IsLeader() {
				return x
			}
		}
		return nil
	}
	var leader *tn
	waitFor(t, 15*time.Second, "a TCP leader with 3 voters", func() (bool, string) {
		leader = leaderOf("")
		if leader == nil {
			return false, "no leader"
		}
		v := strings.Split(leader.n.PublishedState()[KeyVoters], ",")
		return len(v) == 3, fmt.Sprint(v)
	})
	if _, err := leader.n.Apply(context.Background(), Batch(Place("a", "w", "x"), Place("b", "w", "y"))); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	dead[leader.id] = true
	mu.Unlock()
	leader.n.abrupt.Store(true)
	leader.cancel()
	<-leader.done
	var next *tn
	waitFor(t, 10*time.Second, "a new TCP leader", func() (bool, string) {
		next = leaderOf(leader.id)
		return next != nil, ""
	})
	waitFor(t, 5*time.Second, "the committed placements", func() (bool, string) {
		return len(next.n.State().Placements) == 2, ""
	})
}

// TestRaftSegmentsAreSmall: the Raft log preallocates SegmentSize per segment, not
// raft-wal's 64 MiB (an agent must start on a small flash volume).
func TestRaftSegmentsAreSmall(t *testing.T) {
	dir := t.TempDir()
	n, _ := startAlone(t, "s", "small", dir)
	// An entry larger than a segment is still committed (the segment grows).
	big := Plan{Generation: 1}
	for i := range 60000 {
		big.Places = append(big.Places, Placement{ID: fmt.Sprintf("instance-with-a-long-name-%06d", i), Workload: strings.Repeat("w", 60), Node: strings.Repeat("n", 60)})
	}
	if b, err := EncodeCommand(PlanCommand(big)); err != nil || len(b) <= SegmentSize {
		t.Fatalf("test entry: %d bytes, %v; want more than %d", len(b), err, SegmentSize)
	}
	if _, err := n.Apply(context.Background(), PlanCommand(big)); err != nil {
		t.Fatalf("apply an entry larger than a segment: %v", err)
	}
	if got := len(n.State().Placements); got != 60000 {
		t.Errorf("placements after the big plan = %d, want 60000", got)
	}
	segs, err := filepath.Glob(filepath.Join(dir, "raft", "wal", "*.wal"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("no segment files in %s: %v", filepath.Join(dir, "raft", "wal"), err)
	}
	for _, f := range segs {
		fi, err := os.Stat(f)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() > 2*SegmentSize+SegmentSize/2 { // the first segment holds the big entry
			t.Errorf("%s is %d bytes, want at most %d", f, fi.Size(), 2*SegmentSize+SegmentSize/2)
		}
	}
}

// identAuth authenticates nothing and names every peer by a fixed certificate
// identity, as mutual TLS would.
type identAuth struct{ node, region string }

func (a identAuth) Client(c net.Conn, _ string, _ time.Time) (net.Conn, error) { return c, nil }
func (a identAuth) Server(c net.Conn) (net.Conn, error)                        { return c, nil }
func (a identAuth) PeerIdentity(net.Conn) (string, string, bool)               { return a.node, a.region, true }

// A group admits nodes of its own region, and of other regions only those it lists
// (its witnesses); a region the port runs no group of is refused.
func TestMuxAdmitsOnlyTheRegionAndItsWitnesses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	// The listener names every peer "w1" of region "hub".
	mux := NewMux(ln, ln.Addr(), identAuth{"w1", "hub"}, testLogger(t), nil)
	go mux.Serve()
	defer mux.Close()
	listed := map[string]bool{}
	var mu sync.Mutex
	sl, err := mux.register("site", func(node, region string) bool {
		mu.Lock()
		defer mu.Unlock()
		return region == "site" || listed[node]
	})
	if err != nil {
		t.Fatal(err)
	}
	sl.mu.Lock()
	sl.handler = func(ControlRequest) ControlResponse { return ControlResponse{OK: true} }
	sl.mu.Unlock()
	if _, err := mux.register("site", nil); err == nil {
		t.Error("a second group of the same region registered")
	}
	dialer := NewMux(nil, nil, nil, nil, nil)
	call := func(region string) error {
		dsl, _ := dialer.register(region, nil)
		defer dialer.unregister(dsl)
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := (&tcpControl{sl: dsl}).Call(ctx, ln.Addr().String(), ControlRequest{Kind: CtlProbe, From: "x"})
		return err
	}
	if err := call("site"); !errors.Is(err, ErrNotAdmitted) {
		t.Errorf("node of hub, not a witness of site: err = %v, want ErrNotAdmitted", err)
	}
	mu.Lock()
	listed["w1"] = true
	mu.Unlock()
	if err := call("site"); err != nil {
		t.Errorf("the witness of site: %v", err)
	}
	if err := call("elsewhere"); !errors.Is(err, ErrWrongRegion) {
		t.Errorf("a region the port runs no group of: err = %v, want ErrWrongRegion", err)
	}
}
