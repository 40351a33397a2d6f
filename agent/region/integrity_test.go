package region

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	waltypes "github.com/hashicorp/raft-wal/types"
)

// baseLog is a data dir written by a real single-node region (TCP transport, WAL on
// disk), stopped cleanly.
type baseLog struct {
	dir        string
	cluster    string
	last       uint64 // last log index
	placements int
	segs       []string // segment files, oldest first (absolute, under dir)
}

func (b baseLog) rel(p string) string {
	r, err := filepath.Rel(b.dir, p)
	if err != nil {
		panic(err)
	}
	return r
}

// buildLog runs a single-node region (startAlone) in a fresh data dir: its cluster id,
// then with big, nine ~1 MiB plans (a sealed segment and a tail), then `small` small
// commands; the node stops cleanly when the "build" subtest ends.
func buildLog(t *testing.T, big bool, small int) baseLog {
	t.Helper()
	b := baseLog{dir: t.TempDir()}
	t.Run("build", func(t *testing.T) {
		n, _ := startAlone(t, "solo", "r", b.dir)
		waitFor(t, 10*time.Second, "the cluster id", func() (bool, string) { return n.fsm.ClusterID() != "", "" })
		var gen uint64
		for i := 0; big && i < 9; i++ {
			p := Plan{Base: gen, Generation: gen + 1}
			for j := range 7000 {
				p.Places = append(p.Places, Placement{ID: fmt.Sprintf("big-%d-%06d", i, j), Workload: strings.Repeat("w", 60), Node: strings.Repeat("n", 60)})
			}
			gen++
			if _, err := n.Apply(context.Background(), PlanCommand(p)); err != nil {
				t.Fatal(err)
			}
		}
		for i := range small {
			if _, err := n.Apply(context.Background(), Place(fmt.Sprintf("small-%d", i), "w", "solo")); err != nil {
				t.Fatal(err)
			}
		}
		b.cluster, b.last, b.placements = n.fsm.ClusterID(), n.raftPtr().LastIndex(), len(n.State().Placements)
	})
	if t.Failed() {
		t.FailNow()
	}
	segs, err := filepath.Glob(filepath.Join(b.dir, "raft", "wal", "*.wal"))
	if err != nil || len(segs) == 0 || (big && len(segs) < 2) {
		t.Fatalf("segments %v, %v: want a sealed segment and a tail", segs, err)
	}
	slices.Sort(segs)
	b.segs = segs
	return b
}

// clone copies the base data dir into a fresh one.
func (b baseLog) clone(t *testing.T) string {
	t.Helper()
	dst := t.TempDir()
	err := filepath.WalkDir(b.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		to := filepath.Join(dst, b.rel(p))
		if d.IsDir() {
			return os.MkdirAll(to, 0o700)
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(to, data, 0o600)
	})
	if err != nil {
		t.Fatal(err)
	}
	return dst
}

// treeHash is a digest of every file (name and content) under dir.
func treeHash(t *testing.T, dir string) string {
	t.Helper()
	h := sha256.New()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		fmt.Fprintf(h, "%s\x00", strings.TrimPrefix(p, dir))
		_, err = io.Copy(h, f)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return fmt.Sprintf("%x", h.Sum(nil))
}

type testFrame struct {
	typ      byte
	off, len int64
}

// framesOf lists the frames of a segment file up to the first zero header.
func framesOf(t *testing.T, path string) []testFrame {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []testFrame
	for off := int64(walHeaderLen); off+walFrameHdrLen <= int64(len(b)) && b[off] != 0; {
		l := int64(binary.LittleEndian.Uint32(b[off+4:]))
		if b[off] == 3 {
			l = 0
		}
		out = append(out, testFrame{b[off], off, l})
		off += walFrameHdrLen + l + (walFrameHdrLen-l%walFrameHdrLen)&(walFrameHdrLen-1)
	}
	return out
}

func entryFrames(t *testing.T, path string) []testFrame {
	var out []testFrame
	for _, f := range framesOf(t, path) {
		if f.typ == 1 {
			out = append(out, f)
		}
	}
	return out
}

func flipByte(t *testing.T, path string, off int64) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := []byte{0}
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	b[0] ^= 0x40
	if _, err := f.WriteAt(b, off); err != nil {
		t.Fatal(err)
	}
}

func zeroFile(t *testing.T, path string) {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, make([]byte, fi.Size()), 0o600); err != nil {
		t.Fatal(err)
	}
}

// runRefused runs a Node on dir and wants Run to return an error (the refusal).
func runRefused(t *testing.T, dir string) (*Node, error) {
	t.Helper()
	n, err := New(Config{NodeID: "id-solo", Name: "solo", Region: "r", RaftBind: freeAddr(t), DataDir: dir, Eligible: true,
		SettlePeriod: 100 * time.Millisecond, Tick: 50 * time.Millisecond, Logger: testLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	select {
	case err := <-done:
		return n, err
	case <-time.After(10 * time.Second):
		cancel()
		<-done
		t.Fatalf("Run on a damaged data dir kept running: cluster %q, last index %s", n.fsm.ClusterID(), n.PublishedState()[KeyLastIndex])
		return nil, nil
	}
}

// Every kind of damage refuses the start with one line naming the damaged file and the
// recovery command, and changes nothing on disk: no repair, no new log, no new cluster.
func TestDamagedRaftLogRefused(t *testing.T) {
	// small is the log: configuration, no-op, cluster id.
	big, small := buildLog(t, true, 5), buildLog(t, false, 0)
	sealed, tail := big.segs[0], big.segs[len(big.segs)-1]
	only := small.segs[0]
	meta := filepath.Join("raft", "wal", metadb.FileName)
	lastEntry := func(t *testing.T, p string) testFrame { es := entryFrames(t, p); return es[len(es)-1] }
	tests := []struct {
		name    string
		base    baseLog
		damage  func(t *testing.T, dir string)
		path    string // the file the message must name, relative to the data dir
		problem string
	}{
		{"byte flipped in a sealed segment", big, func(t *testing.T, dir string) {
			p := filepath.Join(dir, big.rel(sealed))
			es := entryFrames(t, p)
			e := es[len(es)/2]
			flipByte(t, p, e.off+walFrameHdrLen+e.len/2)
		}, big.rel(sealed), "fails its checksum"},
		{"frame length flipped in a sealed segment", big, func(t *testing.T, dir string) {
			p := filepath.Join(dir, big.rel(sealed))
			es := entryFrames(t, p)
			flipByte(t, p, es[len(es)/2].off+6) // +4 MiB: the walk loses the frames
		}, big.rel(sealed), "entr"}, // unreadable entries, or failed checksums: where it lands
		{"byte flipped in the tail's last entry", big, func(t *testing.T, dir string) {
			p := filepath.Join(dir, big.rel(tail))
			e := lastEntry(t, p)
			flipByte(t, p, e.off+walFrameHdrLen+e.len/2)
		}, big.rel(tail), fmt.Sprintf("entry %d fails its checksum, and this node had applied up to %d", big.last, big.last)},
		{"byte flipped in a tail entry before the last", big, func(t *testing.T, dir string) {
			p := filepath.Join(dir, big.rel(tail))
			es := entryFrames(t, p)
			e := es[len(es)-3]
			flipByte(t, p, e.off+walFrameHdrLen+e.len/2)
		}, big.rel(tail), "fails its checksum"},
		{"last entry cut short", big, func(t *testing.T, dir string) {
			p := filepath.Join(dir, big.rel(tail))
			e := lastEntry(t, p)
			if err := os.Truncate(p, e.off+walFrameHdrLen+e.len/2); err != nil {
				t.Fatal(err)
			}
		}, big.rel(tail), fmt.Sprintf("entry %d is missing", big.last)},
		{"tail segment zeroed", big, func(t *testing.T, dir string) { zeroFile(t, filepath.Join(dir, big.rel(tail))) }, big.rel(tail), "missing"},
		{"tail segment emptied", big, func(t *testing.T, dir string) {
			if err := os.Truncate(filepath.Join(dir, big.rel(tail)), 0); err != nil {
				t.Fatal(err)
			}
		}, big.rel(tail), "missing"},
		{"tail segment deleted", big, func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, big.rel(tail))); err != nil {
				t.Fatal(err)
			}
		}, big.rel(tail), "the file is missing"},
		{"sealed segment zeroed", big, func(t *testing.T, dir string) { zeroFile(t, filepath.Join(dir, big.rel(sealed))) }, big.rel(sealed), "header"},
		{"sealed segment deleted", big, func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, big.rel(sealed))); err != nil {
				t.Fatal(err)
			}
		}, big.rel(sealed), "the file is missing"},
		{"meta DB deleted", big, func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, meta)); err != nil {
				t.Fatal(err)
			}
		}, meta, "missing while 2 segment files remain"},
		{"meta DB cut short", big, func(t *testing.T, dir string) {
			if err := os.Truncate(filepath.Join(dir, meta), 4096); err != nil {
				t.Fatal(err)
			}
		}, meta, "cannot be read"},
		{"meta DB zeroed", big, func(t *testing.T, dir string) { zeroFile(t, filepath.Join(dir, meta)) }, meta, "cannot be read"},
		{"evidence damaged", big, func(t *testing.T, dir string) {
			flipByte(t, filepath.Join(dir, "raft", evidenceFile), 12)
		}, filepath.Join("raft", evidenceFile), "checksum"},
		// A log of three entries (configuration, no-op, cluster id): today these restart
		// with a new cluster id, or with no coordinator and headless:false.
		{"cluster id entry flipped", small, func(t *testing.T, dir string) {
			p := filepath.Join(dir, small.rel(only))
			e := entryFrames(t, p)[2]
			flipByte(t, p, e.off+walFrameHdrLen+e.len/2)
		}, small.rel(only), "entry 3 fails its checksum, and this node had applied up to 3"},
		{"cluster id entry cut short", small, func(t *testing.T, dir string) {
			p := filepath.Join(dir, small.rel(only))
			e := entryFrames(t, p)[2]
			if err := os.Truncate(p, e.off+walFrameHdrLen+e.len/2); err != nil {
				t.Fatal(err)
			}
		}, small.rel(only), "entry 3 is missing"},
		{"only segment emptied", small, func(t *testing.T, dir string) {
			if err := os.Truncate(filepath.Join(dir, small.rel(only)), 0); err != nil {
				t.Fatal(err)
			}
		}, small.rel(only), "it holds no entries, but this node had applied up to " + fmt.Sprint(small.last) + " of cluster " + small.cluster},
		{"only segment deleted", small, func(t *testing.T, dir string) {
			if err := os.Remove(filepath.Join(dir, small.rel(only))); err != nil {
				t.Fatal(err)
			}
		}, small.rel(only), "it holds no entries"},
		{"whole log directory deleted", small, func(t *testing.T, dir string) {
			if err := os.RemoveAll(filepath.Join(dir, "raft", "wal")); err != nil {
				t.Fatal(err)
			}
		}, filepath.Join("raft", "wal"), "of cluster " + small.cluster},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := tc.base.clone(t)
			tc.damage(t, dir)
			before := treeHash(t, filepath.Join(dir, "raft"))
			checkErr := CheckDataDir(dir, "r")
			t.Log(checkErr)
			n, runErr := runRefused(t, dir)
			for _, err := range []error{checkErr, runErr} {
				var de *DamageError
				if !errors.As(err, &de) || !errors.Is(err, ErrDamaged) {
					t.Fatalf("err = %v, want a DamageError", err)
				}
				msg := err.Error()
				if want := filepath.Join(dir, tc.path); de.Path != want || !strings.Contains(msg, want) {
					t.Errorf("the error names %s, want %s: %s", de.Path, want, msg)
				}
				if !strings.Contains(de.Problem, tc.problem) {
					t.Errorf("problem %q, want it to say %q", de.Problem, tc.problem)
				}
				if want := fmt.Sprintf("`murmur operator rejoin --data-dir %s --region r`", dir); !strings.Contains(msg, want) {
					t.Errorf("the error does not give the recovery command %s: %s", want, msg)
				}
				if strings.Contains(msg, "\n") {
					t.Errorf("the error is more than one line: %q", msg)
				}
			}
			if runErr.Error() != checkErr.Error() {
				t.Errorf("Run and CheckDataDir disagree:\n%s\n%s", runErr, checkErr)
			}
			if after := treeHash(t, filepath.Join(dir, "raft")); after != before {
				t.Error("the refused start changed the raft directory")
			}
			if got := metricValue(n.m.bootstraps); got != 0 || n.fsm.ClusterID() != "" {
				t.Errorf("the refused node bootstrapped %v times, cluster %q", got, n.fsm.ClusterID())
			}
		})
	}
}

// appendFrames writes raw frames at the end of the written data of a tail segment
// (segments are preallocated, so this is where the next write would land).
func appendFrames(t *testing.T, path string, frames ...[]byte) {
	t.Helper()
	fr := framesOf(t, path)
	last := fr[len(fr)-1]
	off := last.off + walFrameHdrLen + last.len
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for _, b := range frames {
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
		off += int64(len(b))
	}
}

// entryFrame is a raft-wal entry frame for a command at index, term.
func entryFrame(t testing.TB, index, term uint64) []byte {
	t.Helper()
	data, err := EncodeCommand(Place("torn", "w", "solo"))
	if err != nil {
		t.Fatal(err)
	}
	var p bytes.Buffer
	if err := (&wal.BinaryCodec{}).Encode(&raft.Log{Index: index, Term: term, Type: raft.LogCommand, Data: data}, &p); err != nil {
		t.Fatal(err)
	}
	pad := (walFrameHdrLen - p.Len()%walFrameHdrLen) & (walFrameHdrLen - 1)
	out := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	binary.LittleEndian.PutUint32(out[4:], uint32(p.Len()))
	return append(append(out, p.Bytes()...), make([]byte, pad)...)
}

// commitFrame commits frames with a CRC that matches them, or not.
func commitFrame(good bool, frames ...[]byte) []byte {
	var crc uint32
	for _, f := range frames {
		crc = crc32.Update(crc, castagnoli, f)
	}
	if !good {
		crc ^= 0xdead
	}
	out := []byte{3, 0, 0, 0, 0, 0, 0, 0}
	binary.LittleEndian.PutUint32(out[4:], crc)
	return out
}

func readEvidenceFile(t *testing.T, dir string) logEvidence {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "raft", evidenceFile))
	if err != nil {
		t.Fatal(err)
	}
	ev, err := decodeEvidence(b)
	if err != nil {
		t.Fatal(err)
	}
	return ev
}

// A clean restart, and a restart after a torn write that was never acknowledged (a
// batch beyond this node's evidence), still start, with the same cluster and state.
func TestRaftLogRestartsCleanAndAfterTornWrite(t *testing.T) {
	base := buildLog(t, false, 5)
	ev := readEvidenceFile(t, base.dir)
	if ev.Index != base.last || ev.Cluster != base.cluster || ev.Term == 0 {
		t.Fatalf("evidence after a clean stop = %+v, want index %d of cluster %s", ev, base.last, base.cluster)
	}
	seg := base.segs[0]
	tests := []struct {
		name   string
		damage func(t *testing.T, dir string)
	}{
		{"clean restart", func(*testing.T, string) {}},
		{"entry written without its commit frame", func(t *testing.T, dir string) {
			appendFrames(t, filepath.Join(dir, base.rel(seg)), entryFrame(t, base.last+1, ev.Term))
		}},
		{"last batch torn (commit frame fails its checksum)", func(t *testing.T, dir string) {
			e := entryFrame(t, base.last+1, ev.Term)
			appendFrames(t, filepath.Join(dir, base.rel(seg)), e, commitFrame(false, e))
		}},
		{"last batch cut short", func(t *testing.T, dir string) {
			e := entryFrame(t, base.last+1, ev.Term)
			appendFrames(t, filepath.Join(dir, base.rel(seg)), e[:len(e)-16])
		}},
		{"last entry flipped after a crash left the evidence one entry behind", func(t *testing.T, dir string) {
			// The documented window: an entry applied less than evidenceEvery before
			// a crash is not yet in the evidence, so damage to it reads as a torn write.
			lagging := ev
			lagging.Index--
			if err := os.WriteFile(filepath.Join(dir, "raft", evidenceFile), encodeEvidence(lagging), 0o600); err != nil {
				t.Fatal(err)
			}
			p := filepath.Join(dir, base.rel(seg))
			es := entryFrames(t, p)
			flipByte(t, p, es[len(es)-1].off+walFrameHdrLen+2)
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := base.clone(t)
			tc.damage(t, dir)
			if err := CheckDataDir(dir, "r"); err != nil {
				t.Fatalf("CheckDataDir: %v", err)
			}
			n, _ := startAlone(t, "solo", "r", dir)
			want := base.placements
			if strings.Contains(tc.name, "flipped") {
				want-- // the last placement was in the dropped entry
			}
			waitFor(t, 5*time.Second, "the applied state", func() (bool, string) {
				got := len(n.State().Placements)
				return got == want, fmt.Sprintf("%d placements", got)
			})
			if got := n.fsm.ClusterID(); got != base.cluster {
				t.Errorf("cluster %q after restart, want %q", got, base.cluster)
			}
			if got := metricValue(n.m.bootstraps); got != 0 {
				t.Errorf("bootstrapped %v times on restart", got)
			}
			if _, ok := n.State().Placements["torn"]; ok {
				t.Error("the torn entry was applied")
			}
			if _, err := n.Apply(context.Background(), Place("after", "w", "solo")); err != nil {
				t.Errorf("Apply after restart: %v", err)
			}
		})
	}
}

// A node whose evidence says it had a log never bootstraps a cluster, never promises
// to another's bootstrap, and never mints a cluster id, even with an empty Raft.
func TestNoNewClusterOverRecordedLog(t *testing.T) {
	net := NewInmemNetwork()
	start := func(id string, had *logEvidence) (*Node, *raft.Raft, *fakeClock) {
		clk := &fakeClock{t: time.Unix(1000, 0)}
		tr, ctl := net.Add("addr-"+id, "r")
		n, err := New(Config{NodeID: id, Name: id, Region: "r", Eligible: true, inmemStores: true, Transport: tr, Control: ctl, Clock: clk})
		if err != nil {
			t.Fatal(err)
		}
		store := raft.NewInmemStore()
		r, err := raft.NewRaft(raftConfig(id, n.cfg.Timing, n.log), n.fsm, store, store, raft.NewInmemSnapshotStore(), tr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { r.Shutdown().Error() })
		n.mu.Lock()
		n.r = r
		n.mu.Unlock()
		n.had.Store(had)
		n.UpdatePeers([]Peer{{ID: id, Name: id, Region: "r", RaftAddr: "addr-" + id, Eligible: true, Alive: true}})
		return n, r, clk
	}
	steps := func(n *Node, r *raft.Raft, clk *fakeClock) {
		ls := newLoopState()
		n.step(context.Background(), r, nil, ls)
		clk.t = clk.t.Add(n.cfg.SettlePeriod + time.Second)
		n.step(context.Background(), r, nil, ls)
	}
	had := &logEvidence{Version: 1, Cluster: "r-old", Index: 7, Term: 2}
	lost, lostRaft, lostClk := start("lost", had)
	steps(lost, lostRaft, lostClk)
	if got := metricValue(lost.m.bootstraps); got != 0 || hasState(lostRaft) {
		t.Errorf("a node with a recorded log bootstrapped (%v) over an empty raft", got)
	}
	if resp := lost.handleControl(ControlRequest{Kind: CtlPropose, From: "x", List: []string{"lost", "x"}}); resp.OK {
		t.Error("a node with a recorded log promised a bootstrap")
	}

	// The same steps on a node without evidence bootstrap; as leader it mints a cluster
	// id unless its evidence names one.
	fresh, freshRaft, freshClk := start("fresh", nil)
	steps(fresh, freshRaft, freshClk)
	if got := metricValue(fresh.m.bootstraps); got != 1 {
		t.Fatalf("control: a fresh node bootstrapped %v times, want 1", got)
	}
	waitFor(t, 5*time.Second, "the fresh node leads", func() (bool, string) { return freshRaft.State() == raft.Leader, "" })
	fresh.had.Store(had)
	before := freshRaft.LastIndex()
	fresh.initCluster(freshRaft)
	if got := freshRaft.LastIndex(); got != before {
		t.Errorf("initCluster appended entry %d although the evidence names cluster %s", got, had.Cluster)
	}
	fresh.had.Store(nil)
	fresh.initCluster(freshRaft)
	if freshRaft.LastIndex() == before || fresh.fsm.ClusterID() == "" {
		t.Error("control: initCluster did not mint a cluster id without evidence")
	}
}

func TestEvidenceRoundTrip(t *testing.T) {
	for _, ev := range []logEvidence{{}, {Cluster: "r-1", Index: 1, Term: 1}, {Cluster: "east-1796162830411194500", Index: 1 << 40, Term: 99}} {
		b := encodeEvidence(ev)
		got, err := decodeEvidence(b)
		ev.Version = evidenceVersion
		if err != nil || got != ev {
			t.Errorf("decode(encode(%+v)) = %+v, %v", ev, got, err)
		}
		for i := range b {
			c := slices.Clone(b)
			c[i] ^= 0x01
			if got, err := decodeEvidence(c); err == nil && got != ev {
				t.Errorf("byte %d flipped: decoded %+v without error", i, got)
			}
		}
		if _, err := decodeEvidence(b[:len(b)-1]); err == nil {
			t.Error("a cut evidence file decoded")
		}
	}
}

func FuzzDecodeEvidence(f *testing.F) {
	f.Add(encodeEvidence(logEvidence{Cluster: "r-1", Index: 42, Term: 3}))
	f.Add([]byte("{\"version\":1,\"index\":1,\"term\":1}\ncrc32c 00000000\n"))
	f.Add([]byte("\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ev, err := decodeEvidence(b)
		if err != nil {
			return
		}
		again, err := decodeEvidence(encodeEvidence(ev))
		if err != nil || again != ev {
			t.Fatalf("re-encoding %+v decodes to %+v, %v", ev, again, err)
		}
	})
}

// buildWAL writes n entries of size bytes (8 per fsync'd batch) straight to a WAL in
// <dir>/raft/wal, and the evidence that they were applied.
func buildWAL(tb testing.TB, dir string, n, size int) {
	tb.Helper()
	raftDir := filepath.Join(dir, "raft")
	if err := os.MkdirAll(filepath.Join(raftDir, "wal"), 0o700); err != nil {
		tb.Fatal(err)
	}
	meta := &metadb.BoltMetaDB{}
	w, err := wal.Open(filepath.Join(raftDir, "wal"), wal.WithMetaStore(meta), wal.WithSegmentSize(SegmentSize))
	if err != nil {
		tb.Fatal(err)
	}
	data := bytes.Repeat([]byte("x"), size)
	var batch []*raft.Log
	for i := 1; i <= n; i++ {
		batch = append(batch, &raft.Log{Index: uint64(i), Term: 1, Type: raft.LogCommand, Data: data, AppendedAt: time.Now()})
		if len(batch) == 8 || i == n {
			if err := w.StoreLogs(batch); err != nil {
				tb.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := w.SetUint64([]byte("CurrentTerm"), 1); err != nil {
		tb.Fatal(err)
	}
	w.Close()
	meta.Close()
	if err := os.WriteFile(filepath.Join(raftDir, evidenceFile), encodeEvidence(logEvidence{Index: uint64(n), Term: 1}), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(raftDir, regionMarker), []byte("r\n"), 0o600); err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkVerifyRaftLog is the cost the checks add to a start, for a log of 10,000
// entries of 512 bytes (5 MiB, one segment): "check" is the read-only check the agent
// runs before it joins (CheckDataDir), "open" is what Run does (the same check, then
// raft-wal's open, then every entry read back through raft-wal).
//
//	go test -run '^$' -bench VerifyRaftLog -benchtime 20x ./agent/region/
func BenchmarkVerifyRaftLog(b *testing.B) {
	dir := b.TempDir()
	buildWAL(b, dir, 10000, 512)
	b.Run("check", func(b *testing.B) {
		for b.Loop() {
			if err := CheckDataDir(dir, "r"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("open", func(b *testing.B) {
		log := testLogger(b)
		for b.Loop() {
			st, err := openStores(filepath.Join(dir, "raft"), "r", false, log)
			if err != nil {
				b.Fatal(err)
			}
			st.close()
		}
	})
	b.Run("open-unchecked", func(b *testing.B) {
		for b.Loop() {
			meta := &metadb.BoltMetaDB{}
			w, err := wal.Open(filepath.Join(dir, "raft", "wal"), wal.WithMetaStore(meta), wal.WithSegmentSize(SegmentSize))
			if err != nil {
				b.Fatal(err)
			}
			w.Close()
			meta.Close()
		}
	})
}

// TestVerifyTenThousandEntries runs the checks over a 10,000-entry log and reports
// how long they took (the figure in docs/regions.md comes from the benchmark above).
func TestVerifyTenThousandEntries(t *testing.T) {
	dir := t.TempDir()
	buildWAL(t, dir, 10000, 512)
	start := time.Now()
	if err := CheckDataDir(dir, "r"); err != nil {
		t.Fatal(err)
	}
	check := time.Since(start)
	start = time.Now()
	st, err := openStores(filepath.Join(dir, "raft"), "r", false, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	open := time.Since(start)
	if last, _ := st.logs.LastIndex(); last != 10000 {
		t.Errorf("last index %d, want 10000", last)
	}
	st.close()
	t.Logf("10,000 entries: read-only check %v, check + open + read back %v", check, open)
}

// A compacted log (its first entries only in a snapshot) starts while a snapshot raft
// can restore covers them, and is refused, naming the snapshot, once none does.
func TestCompactedLogNeedsItsSnapshot(t *testing.T) {
	build := func(t *testing.T, deleteAll bool) string {
		dir := t.TempDir()
		buildWAL(t, dir, 100, 64)
		raftDir := filepath.Join(dir, "raft")
		meta := &metadb.BoltMetaDB{}
		w, err := wal.Open(filepath.Join(raftDir, "wal"), wal.WithMetaStore(meta), wal.WithSegmentSize(SegmentSize))
		if err != nil {
			t.Fatal(err)
		}
		ss, err := raft.NewFileSnapshotStore(raftDir, 2, io.Discard)
		if err != nil {
			t.Fatal(err)
		}
		at, upTo := uint64(60), uint64(60)
		if deleteAll { // as after a snapshot install: the whole log goes
			at, upTo = 100, 100
		}
		sink, err := ss.Create(raft.SnapshotVersionMax, at, 1, raft.Configuration{}, 1, nil)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := EncodeState(NewState())
		if _, err := sink.Write(b); err != nil {
			t.Fatal(err)
		}
		if err := sink.Close(); err != nil {
			t.Fatal(err)
		}
		if err := w.DeleteRange(1, upTo); err != nil {
			t.Fatal(err)
		}
		w.Close()
		meta.Close()
		return dir
	}
	snapshotDir := func(t *testing.T, dir string) string {
		ds, err := filepath.Glob(filepath.Join(dir, "raft", "snapshots", "*"))
		if err != nil || len(ds) != 1 {
			t.Fatalf("snapshots %v, %v", ds, err)
		}
		return ds[0]
	}
	for _, deleteAll := range []bool{false, true} {
		t.Run(fmt.Sprintf("whole log in the snapshot=%v", deleteAll), func(t *testing.T) {
			dir := build(t, deleteAll)
			if err := CheckDataDir(dir, "r"); err != nil {
				t.Fatalf("intact: %v", err)
			}
			st, err := openStores(filepath.Join(dir, "raft"), "r", false, testLogger(t))
			if err != nil {
				t.Fatalf("intact: open: %v", err)
			}
			st.close()

			flipByte(t, filepath.Join(snapshotDir(t, dir), "state.bin"), 3)
			var de *DamageError
			if err := CheckDataDir(dir, "r"); !errors.As(err, &de) || de.Path != snapshotDir(t, dir) || !strings.Contains(de.Problem, "checksum") {
				t.Errorf("snapshot damaged: err = %v, want it to name %s", err, snapshotDir(t, dir))
			}
			if err := os.RemoveAll(snapshotDir(t, dir)); err != nil {
				t.Fatal(err)
			}
			want := filepath.Join(dir, "raft", "snapshots")
			if deleteAll {
				want = filepath.Join(dir, "raft", "wal")
			}
			if err := CheckDataDir(dir, "r"); !errors.As(err, &de) || de.Path != want {
				t.Errorf("snapshot gone: err = %v, want it to name %s", err, want)
			}
		})
	}
}

// The recovery route in a three-voter region: a voter refused on a damaged log is set
// aside (SetAside, what `murmur operator rejoin` does) and restarted with a new id; the
// coordinator replaces the old id and the node catches up with every committed entry.
func TestDamagedVoterRejoinsAsNewMember(t *testing.T) {
	f := newFleet(t, func(c *Config) { c.DeadGrace = time.Minute })
	tns := startRegion(f, "r", 3, true)
	leader := f.waitStable("r", 3, 15*time.Second)
	applyPlacements(t, leader, "a", 10)
	victim := voterOther(t, leader, tns)
	waitFor(t, 5*time.Second, "the victim applied the placements", func() (bool, string) {
		return len(victim.n.State().Placements) == 10, ""
	})
	f.stopGraceful(victim)
	segs, err := filepath.Glob(filepath.Join(victim.dir, "raft", "wal", "*.wal"))
	if err != nil || len(segs) == 0 {
		t.Fatalf("segments %v, %v", segs, err)
	}
	if err := os.Truncate(segs[len(segs)-1], 0); err != nil {
		t.Fatal(err)
	}
	// The refused start, outside the fleet's gossip (it never runs).
	cfg := f.config(victim)
	n, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	var de *DamageError
	if err := n.Run(context.Background()); !errors.As(err, &de) || de.Path != segs[len(segs)-1] {
		t.Fatalf("restart on the emptied segment: %v, want a DamageError naming %s", err, segs[len(segs)-1])
	}
	applyPlacements(t, leader, "b", 10) // committed while it is out

	if _, err := SetAside(victim.dir, "other", time.Now()); err == nil || !strings.Contains(err.Error(), "belongs to region") {
		t.Errorf("SetAside with the wrong region: %v", err)
	}
	if _, err := SetAside(leader.dir, "r", time.Now()); err == nil || !strings.Contains(err.Error(), "stop the agent") {
		t.Errorf("SetAside under a running node: %v", err)
	}
	moved, err := SetAside(victim.dir, "r", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(moved, evidenceFile)); err != nil {
		t.Errorf("the damaged state was not kept in %s: %v", moved, err)
	}
	reborn := &tnode{id: "id-new-" + victim.name, name: victim.name, region: "r", addr: victim.addr, eligible: true, dir: victim.dir}
	f.mu.Lock()
	f.nodes = slices.DeleteFunc(f.nodes, func(tn *tnode) bool { return tn == victim })
	f.nodes = append(f.nodes, reborn)
	f.mu.Unlock()
	f.start(reborn)
	waitFor(t, 15*time.Second, "the new id replaced the old one", func() (bool, string) {
		ls := f.leaders("r")
		if len(ls) != 1 {
			return false, "no single leader"
		}
		v, nv := configOf(ls[0])
		all := append(slices.Clone(v), nv...)
		return len(v) == 3 && slices.Contains(v, reborn.id) && !slices.Contains(all, victim.id), fmt.Sprintf("voters %v nonvoters %v", v, nv)
	})
	waitFor(t, 10*time.Second, "the new member caught up", func() (bool, string) {
		got := len(reborn.n.State().Placements)
		return got == 20 && reborn.n.fsm.ClusterID() == leader.n.fsm.ClusterID(), fmt.Sprintf("%d placements", got)
	})
	if got := bootstraps([]*tnode{reborn}); got != 0 {
		t.Errorf("the rejoining node bootstrapped %d times", got)
	}
}

// FuzzScanSegment: whatever a segment file holds, the scan returns (no panic, no
// unbounded allocation), and what it serves is a prefix of entries with their terms.
func FuzzScanSegment(f *testing.F) {
	hdr := make([]byte, walHeaderLen)
	binary.LittleEndian.PutUint64(hdr[0:], walMagic)
	binary.LittleEndian.PutUint64(hdr[8:], 1)
	binary.LittleEndian.PutUint64(hdr[24:], wal.CodecBinaryV1)
	e := entryFrame(f, 1, 1)
	f.Add(slices.Concat(hdr, e, commitFrame(true, hdr, e)), false)
	f.Add(slices.Concat(hdr, e, commitFrame(false, hdr, e)), false)
	f.Add(slices.Concat(hdr, e[:9]), true)
	f.Add([]byte{}, false)
	dir := f.TempDir()
	f.Fuzz(func(t *testing.T, b []byte, sealed bool) {
		p := filepath.Join(dir, "seg.wal")
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		info := waltypes.SegmentInfo{ID: 0, BaseIndex: 1, MinIndex: 1, Codec: wal.CodecBinaryV1}
		if sealed {
			info.MaxIndex, info.IndexStart, info.SealTime = 1, 1, time.Unix(1, 0)
		}
		s, problem, err := scanSegment(p, info, sealed)
		if err != nil {
			t.Fatal(err)
		}
		if problem == "" && s == nil {
			t.Fatal("no scan and no problem")
		}
		if s != nil && uint64(len(s.terms))*walFrameHdrLen*2 > uint64(len(b)) {
			t.Fatalf("%d entries served from %d bytes", len(s.terms), len(b))
		}
	})
}
