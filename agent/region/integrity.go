package region

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/hashicorp/raft"
	wal "github.com/hashicorp/raft-wal"
	"github.com/hashicorp/raft-wal/metadb"
	"github.com/hashicorp/raft-wal/segment"
	waltypes "github.com/hashicorp/raft-wal/types"

	"github.com/murmur-edge/murmur/runtime"
)

// Damage to the Raft log (docs/regions.md, "Damage to the Raft log").
//
// raft-wal (v0.4.0) checks less than it could when it opens a log:
//
//   - every commit frame of a segment carries a CRC-32C of the batch of frames it
//     commits, but raft-wal verifies only the last batch of the tail segment, and only
//     to decide whether that batch was torn; everything else is served as read, so a
//     flipped byte anywhere else reaches the FSM;
//   - a tail batch that fails its CRC, or a tail segment cut short, zeroed or missing,
//     is silently dropped (the committed entries with it), and a missing meta DB makes
//     it start an empty log and delete the segment files.
//
// So, before raft-wal opens anything, verifyRaftDir reads the segments itself: every
// commit batch of every segment must match its CRC, the entries must carry the indexes
// the segment metadata promises, and sealed segments must be whole. It then compares
// what the log holds with this node's own evidence of what was there (logEvidence, a
// small file written atomically): the highest index this node applied (so it was
// durable here), the term of that entry, and the cluster id. A node never starts with
// an applied entry missing, and never bootstraps or mints a new cluster over a log
// that evidence says existed.
//
// The one loss accepted is the one raft-wal was built for: a torn write. A batch at the
// very end of the tail segment that fails its CRC (or is cut short) and whose entries
// all lie beyond the evidence is dropped, as raft-wal does: such a write never
// returned to Raft (raft-wal fsyncs before acknowledging), or returned less than one
// evidence period (evidenceEvery) before the crash. Damage anywhere else, or to an
// entry at or below the evidence, refuses the start with one line (DamageError) naming
// the file and the way back.

// ErrDamaged is wrapped by every DamageError.
var ErrDamaged = errors.New("raft storage damaged")

// DamageError says this node's Raft storage cannot be trusted: starting on it would
// lose or alter committed entries. Its message is one line naming the damaged file and
// the recovery command; the agent exits 1 with it.
type DamageError struct {
	Path    string // the damaged file or directory
	Problem string // what is wrong, e.g. "entry 42 fails its checksum"
	DataDir string // the agent's data dir
	Region  string
}

func (e *DamageError) Error() string {
	return fmt.Sprintf("raft storage %s is damaged (%s): restore %s from a backup, or run `murmur operator rejoin --data-dir %s --region %s` and start the agent to rejoin region %s as a new, empty member",
		e.Path, e.Problem, e.DataDir, e.DataDir, e.Region, e.Region)
}

func (e *DamageError) Unwrap() error { return ErrDamaged }

// evidenceFile (in <data-dir>/raft, beside wal/) holds this node's logEvidence.
const evidenceFile = "log-evidence"

// evidenceEvery bounds how often a running node rewrites its evidence (only when the
// applied index moved): the window in which a torn or flipped last tail batch is taken
// for an unacknowledged write.
const evidenceEvery = 500 * time.Millisecond

// logEvidence is what this node knows was in its log. Index only grows.
type logEvidence struct {
	Version int    `json:"version"`
	Cluster string `json:"cluster,omitempty"` // the group's cluster id, once applied
	Index   uint64 `json:"index"`             // highest index applied here (durable here)
	Term    uint64 `json:"term"`              // the term of the entry at Index
}

const evidenceVersion = 1

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// encodeEvidence is one JSON line and one checksum line: "crc32c XXXXXXXX".
func encodeEvidence(ev logEvidence) []byte {
	ev.Version = evidenceVersion
	b, _ := json.Marshal(ev) // cannot fail: fixed struct of strings and integers
	return fmt.Appendf(b, "\ncrc32c %08x\n", crc32.Checksum(b, castagnoli))
}

// decodeEvidence is the inverse of encodeEvidence; anything else is an error.
func decodeEvidence(b []byte) (logEvidence, error) {
	var ev logEvidence
	body, rest, ok := bytes.Cut(b, []byte("\n"))
	if !ok {
		return ev, errors.New("no checksum line")
	}
	sum, ok := bytes.CutPrefix(rest, []byte("crc32c "))
	if !ok || len(sum) != 9 || sum[8] != '\n' {
		return ev, errors.New("bad checksum line")
	}
	want, err := strconv.ParseUint(string(sum[:8]), 16, 32)
	if err != nil {
		return ev, errors.New("bad checksum line")
	}
	if got := crc32.Checksum(body, castagnoli); uint64(got) != want {
		return ev, fmt.Errorf("checksum %08x, the file says %08x", got, want)
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&ev); err != nil {
		return ev, fmt.Errorf("decode: %w", err)
	}
	if dec.More() {
		return ev, errors.New("data after the record")
	}
	if ev.Version != evidenceVersion {
		return ev, fmt.Errorf("version %d, want %d", ev.Version, evidenceVersion)
	}
	return ev, nil
}

// The raft-wal v0.4.0 segment format (segment/format.go): a 32-byte file header
// (magic, version, base index, segment id, codec), then 8-byte-aligned frames
// (type, 3 zero bytes, length or CRC). A commit frame carries the CRC-32C of every
// byte since the previous commit frame (the first one includes the file header).
const (
	walMagic       = 0x58eb6b0d
	walHeaderLen   = 32
	walFrameHdrLen = 8
)

// segScan is what one segment file holds, as read by scanSegment.
type segScan struct {
	info   waltypes.SegmentInfo
	path   string
	sealed bool
	// terms[i] is the term of entry info.BaseIndex+i, for the entries raft-wal will
	// serve: those of commit batches whose CRC matched.
	terms []uint64
	// tornFrom..tornTo is the last batch of a tail segment when it fails its CRC
	// with nothing written after it: what raft-wal drops on open. Zero when none.
	tornFrom, tornTo uint64
	// stop says why reading stopped before the end of the written data ("" at a
	// clean end): the reason given when entries turn out to be missing.
	stop string
}

func (s *segScan) last() uint64 { return s.info.BaseIndex + uint64(len(s.terms)) - 1 }

// scanSegment reads one segment file and checks every commit batch in it. It returns
// the scan, or a problem when the file is damaged.
func scanSegment(path string, info waltypes.SegmentInfo, sealed bool) (*segScan, string, error) {
	s := &segScan{info: info, path: path, sealed: sealed}
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		if sealed {
			return nil, fmt.Sprintf("the file is missing: it held %s", entries(info.MinIndex, info.MaxIndex)), nil
		}
		s.stop = "the file is missing"
		return s, "", nil
	}
	if err != nil {
		return nil, "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, "", err
	}
	short := func(err error) bool { return errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) }
	br := bufio.NewReaderSize(f, 256<<10)
	var hdr [walHeaderLen]byte
	n, err := io.ReadFull(br, hdr[:])
	if err != nil && !short(err) {
		return nil, "", err
	}
	headerOK := n == walHeaderLen && binary.LittleEndian.Uint64(hdr[0:8]) == walMagic &&
		binary.LittleEndian.Uint64(hdr[8:16]) == info.BaseIndex &&
		binary.LittleEndian.Uint64(hdr[16:24]) == info.ID && binary.LittleEndian.Uint64(hdr[24:32]) == info.Codec
	if sealed && !headerOK {
		return nil, "its header does not match the segment metadata (zeroed or overwritten?)", nil
	}
	if sealed && info.IndexStart == 0 && info.MaxIndex >= info.MinIndex {
		// raft-wal v0.4.0 seals the tail on a tail truncation without writing its
		// index block, then cannot read the segment back after a restart (raft
		// panics): hashicorp/raft-wal#31, fixed in v0.4.1.
		return nil, fmt.Sprintf("it was sealed without an index block, so %s cannot be read back (hashicorp/raft-wal#31)", entries(info.MinIndex, info.MaxIndex)), nil
	}
	switch {
	case n == 0:
		s.stop = "the file is empty"
	case n < walHeaderLen:
		s.stop = "the file is shorter than a segment header"
	case !headerOK:
		s.stop = "its header is damaged or zeroed"
	}

	type entry struct {
		off  int64
		term uint64
		ok   bool // decodes and carries the index its position says
	}
	type batch struct {
		from, to uint64 // entries from..to (to < from: none)
		good     bool
	}
	var ents []entry // committed by a commit frame, good or not
	var batches []batch
	pending := 0 // entries read since the last commit frame (at the end of ents)
	var index []uint32
	indexAt := int64(-1)
	crc := crc32.Checksum(hdr[:n], castagnoli) // the first batch includes the file header
	off := int64(walHeaderLen)
	payload := make([]byte, 0, 64<<10)
	for n == walHeaderLen {
		var fh [walFrameHdrLen]byte
		m, err := io.ReadFull(br, fh[:])
		if m < walFrameHdrLen {
			if err != nil && !short(err) {
				return nil, "", err
			}
			break
		}
		if fh == [walFrameHdrLen]byte{} {
			break // zeros: the end of what was written (segments are preallocated)
		}
		typ, l := fh[0], binary.LittleEndian.Uint32(fh[4:8])
		if fh[1] != 0 || fh[2] != 0 || fh[3] != 0 || typ < segment.FrameEntry || typ > segment.FrameCommit ||
			(typ != segment.FrameCommit && l > segment.MaxEntrySize) {
			s.stop = fmt.Sprintf("the frame header at offset %d is damaged", off)
			break
		}
		if typ == segment.FrameCommit {
			from := info.BaseIndex + uint64(len(ents)-pending)
			batches = append(batches, batch{from: from, to: from + uint64(pending) - 1, good: l == crc})
			pending, crc = 0, 0
			off += walFrameHdrLen
			continue
		}
		size := int(l) + (walFrameHdrLen-int(l)%walFrameHdrLen)&(walFrameHdrLen-1)
		if off+walFrameHdrLen+int64(size) > fi.Size() {
			s.stop = fmt.Sprintf("the file ends inside the frame at offset %d", off)
			break
		}
		if cap(payload) < size {
			payload = make([]byte, size)
		}
		payload = payload[:size]
		if _, err := io.ReadFull(br, payload); err != nil {
			if !short(err) {
				return nil, "", err
			}
			s.stop = fmt.Sprintf("the file ends inside the frame at offset %d", off)
			break
		}
		crc = crc32.Update(crc, castagnoli, fh[:])
		crc = crc32.Update(crc, castagnoli, payload)
		switch typ {
		case segment.FrameEntry:
			// wal.BinaryCodec: uvarint index, uvarint term, ...
			want := info.BaseIndex + uint64(len(ents))
			idx, k := binary.Uvarint(payload[:l])
			var term uint64
			k2 := 0
			if k > 0 {
				term, k2 = binary.Uvarint(payload[k:l])
			}
			ents = append(ents, entry{off: off, term: term, ok: k > 0 && k2 > 0 && idx == want})
			pending++
		case segment.FrameIndex:
			indexAt, index = off, index[:0]
			for i := 0; i+4 <= int(l); i += 4 {
				index = append(index, binary.LittleEndian.Uint32(payload[i:]))
			}
		}
		off += int64(walFrameHdrLen + size)
	}
	if pending > 0 {
		// Written after the last commit frame: never acknowledged, raft-wal ignores it.
		if s.stop == "" {
			s.stop = fmt.Sprintf("entries from %d have no commit frame", info.BaseIndex+uint64(len(ents)-pending))
		}
		ents = ents[:len(ents)-pending]
	}
	served := len(ents)
	for i, b := range batches {
		switch {
		case b.good || (b.to < info.MinIndex && b.to >= b.from):
			// Good, or only entries a head truncation already deleted.
		case !sealed && i == len(batches)-1 && s.stop == "" && pending == 0:
			// The last thing written to the tail: a torn write, dropped by raft-wal.
			s.tornFrom, s.tornTo = b.from, b.to
			served = int(b.from - info.BaseIndex)
			switch {
			case b.to == b.from:
				s.stop = fmt.Sprintf("entry %d fails its checksum", b.from)
			case b.to > b.from:
				s.stop = fmt.Sprintf("entries %d..%d fail their checksum", b.from, b.to)
			default:
				s.stop = "its last commit frame fails its checksum"
			}
		case b.to < b.from:
			return nil, fmt.Sprintf("the commit frame after entry %d fails its checksum", b.from-1), nil
		case b.from == b.to:
			return nil, fmt.Sprintf("entry %d fails its checksum", b.from), nil
		default:
			return nil, fmt.Sprintf("entries %d..%d fail their checksum", b.from, b.to), nil
		}
	}
	ents = ents[:served]
	for i, e := range ents {
		if idx := info.BaseIndex + uint64(i); !e.ok && idx >= info.MinIndex {
			return nil, fmt.Sprintf("entry %d does not decode as entry %d", idx, idx), nil
		}
		s.terms = append(s.terms, e.term)
	}
	if len(ents) > 0 && !headerOK {
		return nil, "its header does not match the segment metadata", nil
	}
	if !sealed {
		return s, "", nil
	}
	if info.MaxIndex >= info.BaseIndex && uint64(len(ents)) < info.MaxIndex-info.BaseIndex+1 {
		why := s.stop
		if why == "" {
			why = "the file ends early"
		}
		return nil, fmt.Sprintf("%s cannot be read: %s", entries(info.BaseIndex+uint64(len(ents)), info.MaxIndex), why), nil
	}
	if info.IndexStart != 0 {
		if indexAt < 0 || uint64(indexAt)+walFrameHdrLen != info.IndexStart || len(index) < len(ents) {
			return nil, "its index block is missing or misplaced", nil
		}
		for i, e := range ents {
			if int64(index[i]) != e.off {
				return nil, fmt.Sprintf("its index block misplaces entry %d", info.BaseIndex+uint64(i)), nil
			}
		}
	}
	return s, "", nil
}

// entries is "entry 7" or "entries 7..9".
func entries(from, to uint64) string {
	if from == to {
		return fmt.Sprintf("entry %d", from)
	}
	return fmt.Sprintf("entries %d..%d", from, to)
}

// walScan is the whole log as read by scanWAL: what raft-wal will serve once opened.
type walScan struct {
	dir         string
	metaPath    string
	noMeta      bool // no meta DB (and so no segment either): a new log, or one deleted
	segs        []*segScan
	first, last uint64 // 0, 0: no entries
	currentTerm uint64
}

// segmentFor is the segment that holds (or should hold) idx, or nil.
func (w *walScan) segmentFor(idx uint64) *segScan {
	var out *segScan
	for _, s := range w.segs {
		if s.info.BaseIndex <= idx {
			out = s
		}
	}
	return out
}

func (w *walScan) term(idx uint64) (uint64, bool) {
	if idx < w.first || idx > w.last || idx == 0 {
		return 0, false
	}
	s := w.segmentFor(idx)
	if s == nil || idx-s.info.BaseIndex >= uint64(len(s.terms)) {
		return 0, false
	}
	return s.terms[idx-s.info.BaseIndex], true
}

// walProblem is a damaged file found by scanWAL.
type walProblem struct{ path, problem string }

// scanWAL reads the raft-wal directory without raft-wal (which would repair, drop or
// delete what it does not like): meta DB, then every segment it lists.
func scanWAL(dir string) (*walScan, *walProblem, error) {
	w := &walScan{dir: dir, metaPath: filepath.Join(dir, metadb.FileName)}
	names, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		w.noMeta = true
		return w, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	var segFiles []string
	for _, e := range names {
		if strings.HasSuffix(e.Name(), ".wal") {
			segFiles = append(segFiles, e.Name())
		}
	}
	if _, err := os.Stat(w.metaPath); errors.Is(err, fs.ErrNotExist) {
		if len(segFiles) > 0 {
			// raft-wal would start an empty log and delete the segments.
			return nil, &walProblem{w.metaPath, fmt.Sprintf("it is missing while %d segment files remain", len(segFiles))}, nil
		}
		w.noMeta = true
		return w, nil, nil
	} else if err != nil {
		return nil, nil, err
	}
	ps, term, problem := loadWALMeta(dir)
	if problem != "" {
		return nil, &walProblem{w.metaPath, problem}, nil
	}
	w.currentTerm = term
	for i, si := range ps.Segments {
		sealed := !si.SealTime.IsZero()
		if si.Codec != wal.CodecBinaryV1 { // the only codec raft-wal v0.4.0 writes
			return nil, &walProblem{w.metaPath, fmt.Sprintf("segment %d has unknown codec %d", si.ID, si.Codec)}, nil
		}
		if !sealed && i != len(ps.Segments)-1 {
			return nil, &walProblem{w.metaPath, "an unsealed segment is not the last one"}, nil
		}
		if i > 0 {
			prev := ps.Segments[i-1]
			if prev.MaxIndex+1 != si.BaseIndex {
				return nil, &walProblem{w.metaPath, fmt.Sprintf("segment list has a gap: one ends at %d, the next starts at %d", prev.MaxIndex, si.BaseIndex)}, nil
			}
		}
		path := filepath.Join(dir, segment.FileName(si))
		s, problem, err := scanSegment(path, si, sealed)
		if err != nil {
			return nil, nil, fmt.Errorf("read %s: %w", path, err)
		}
		if problem != "" {
			return nil, &walProblem{path, problem}, nil
		}
		w.segs = append(w.segs, s)
	}
	// First and last index, the way raft-wal computes them (state.go).
	if len(w.segs) > 0 {
		tail := w.segs[len(w.segs)-1]
		switch {
		case len(tail.terms) > 0:
			w.last = tail.last()
		case len(w.segs) > 1:
			w.last = tail.info.BaseIndex - 1
		}
		if head := w.segs[0]; head.sealed || len(head.terms) > 0 {
			w.first = head.info.MinIndex
		}
		if w.last < w.first {
			w.first, w.last = 0, 0
		}
	}
	return w, nil, nil
}

// loadWALMeta reads raft-wal's bolt meta DB: the segment list and raft's current term
// (kept in its stable bucket). bbolt panics on some damaged pages: that is a problem
// with the file, reported as such.
func loadWALMeta(dir string) (ps waltypes.PersistentState, term uint64, problem string) {
	db := &metadb.BoltMetaDB{}
	defer func() {
		if r := recover(); r != nil {
			problem = fmt.Sprintf("it cannot be read: %v", r)
		}
		db.Close()
	}()
	ps, err := db.Load(dir)
	if err != nil {
		return ps, 0, "it cannot be read: " + strings.TrimPrefix(err.Error(), "failed to open "+metadb.FileName+": ")
	}
	b, err := db.GetStable([]byte("CurrentTerm")) // raft's keyCurrentTerm
	if err != nil {
		return ps, 0, err.Error()
	}
	switch len(b) {
	case 0:
	case 8: // raft-wal's SetUint64
		term = binary.LittleEndian.Uint64(b)
	default:
		return ps, 0, fmt.Sprintf("raft's current term is %d bytes long", len(b))
	}
	return ps, term, ""
}

// snapScan is the snapshot raft will restore: the newest whose data matches its CRC.
type snapScan struct {
	index uint64 // 0: none
	bad   string // the newest snapshot that fails its check, "" if none
}

func scanSnapshots(dir string, log *slog.Logger) (*snapScan, error) {
	out := &snapScan{}
	if _, err := os.Stat(filepath.Join(dir, "snapshots")); errors.Is(err, fs.ErrNotExist) {
		return out, nil
	}
	ss, err := raft.NewFileSnapshotStoreWithLogger(dir, 2, newHclog(log, "raft-snapshots"))
	if err != nil {
		return nil, err
	}
	metas, err := ss.List()
	if err != nil {
		return nil, err
	}
	for _, m := range metas {
		_, rc, err := ss.Open(m.ID) // reads the whole state and checks its CRC-64
		if err != nil {
			if out.bad == "" {
				out.bad = filepath.Join(dir, "snapshots", m.ID)
			}
			continue
		}
		rc.Close()
		out.index = m.Index
		break
	}
	return out, nil
}

// verified is what verifyRaftDir found: a log this node may start on.
type verified struct {
	wal      *walScan
	snap     *snapScan
	evidence *logEvidence // nil: none recorded yet
	// dropped: a torn last tail batch raft-wal will drop (never acknowledged).
	droppedFrom, droppedTo uint64
	droppedIn              string
}

// verifyRaftDir checks the Raft storage in dir (<data-dir>/raft) without changing
// anything: the log (scanWAL), the snapshots, and the log against this node's
// evidence. Damage is a *DamageError.
func verifyRaftDir(dir, region string, log *slog.Logger) (*verified, error) {
	dataDir := filepath.Dir(dir)
	damaged := func(path, problem string) error {
		return &DamageError{Path: path, Problem: problem, DataDir: dataDir, Region: region}
	}
	evPath := filepath.Join(dir, evidenceFile)
	var ev *logEvidence
	if b, err := os.ReadFile(evPath); err == nil {
		e, err := decodeEvidence(b)
		if err != nil {
			return nil, damaged(evPath, err.Error())
		}
		ev = &e
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", evPath, err)
	}
	w, p, err := scanWAL(filepath.Join(dir, "wal"))
	if err != nil {
		return nil, err
	}
	if p != nil {
		return nil, damaged(p.path, p.problem)
	}
	snap, err := scanSnapshots(dir, log)
	if err != nil {
		return nil, err
	}
	v := &verified{wal: w, snap: snap, evidence: ev}
	if len(w.segs) > 0 {
		if t := w.segs[len(w.segs)-1]; t.tornFrom != 0 {
			v.droppedFrom, v.droppedTo, v.droppedIn = t.tornFrom, t.tornTo, t.path
		}
	}

	// Entries before the first one in the log must be in the snapshot raft restores.
	if w.first > 1 && snap.index < w.first-1 {
		path, why := filepath.Join(dir, "snapshots"), "no snapshot"
		if snap.bad != "" {
			path, why = snap.bad, "the newest snapshot fails its checksum and no other snapshot"
		}
		return nil, damaged(path, fmt.Sprintf("%s holds entries 1..%d, which the log no longer has", why, w.first-1))
	}
	if ev == nil || ev.Index == 0 {
		return v, nil
	}
	// Every entry this node applied must still be there, in the log or a snapshot.
	if have := max(w.last, snap.index); have < ev.Index {
		return nil, missingEntries(w, snap, ev, have, damaged)
	}
	if t, ok := w.term(ev.Index); ok && t != ev.Term {
		return nil, damaged(w.segmentFor(ev.Index).path, fmt.Sprintf("entry %d has term %d, but this node applied it with term %d", ev.Index, t, ev.Term))
	}
	if w.noMeta {
		// Entries in a snapshot, but raft's term and vote are gone: this node could
		// vote twice in one term.
		return nil, damaged(w.dir, fmt.Sprintf("its meta DB (raft's term and vote) is gone, and this node had applied up to %d", ev.Index))
	}
	if w.currentTerm < ev.Term {
		return nil, damaged(w.metaPath, fmt.Sprintf("it records term %d, but this node had applied entries of term %d", w.currentTerm, ev.Term))
	}
	return v, nil
}

// missingEntries names the file that should hold entry have+1, which this node
// applied, and why it does not.
func missingEntries(w *walScan, snap *snapScan, ev *logEvidence, have uint64, damaged func(path, problem string) error) error {
	verb := "is"
	if have+1 < ev.Index {
		verb = "are"
	}
	problem := fmt.Sprintf("%s %s missing, and this node had applied up to %d", entries(have+1, ev.Index), verb, ev.Index)
	if have == 0 {
		problem = fmt.Sprintf("it holds no entries, but this node had applied up to %d", ev.Index)
		if ev.Cluster != "" {
			problem += " of cluster " + ev.Cluster
		}
	}
	s := w.segmentFor(have + 1)
	switch {
	case s == nil && snap.bad != "":
		return damaged(snap.bad, fmt.Sprintf("it fails its checksum, and the log holds nothing up to %d, which this node had applied", ev.Index))
	case s == nil:
		return damaged(w.dir, problem)
	case s.tornFrom != 0 && s.tornFrom <= ev.Index:
		return damaged(s.path, fmt.Sprintf("entry %d fails its checksum, and this node had applied up to %d", s.tornFrom, ev.Index))
	case s.stop != "":
		return damaged(s.path, problem+": "+s.stop)
	}
	return damaged(s.path, problem)
}

// CheckDataDir verifies the Raft storage in dataDir (the agent's data dir) for region
// without changing anything: the agent calls it before it joins the fleet, so a
// damaged log refuses the start (a *DamageError) instead of running on half a log. A
// data dir without Raft state passes. Run checks again when it opens the stores.
func CheckDataDir(dataDir, region string) error {
	dir := filepath.Join(dataDir, "raft")
	if _, err := os.Stat(dir); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if _, err := os.Stat(filepath.Join(dir, regionMarker)); err == nil {
		if err := checkRegionMarker(dir, region, false); err != nil {
			return err
		}
	}
	if err := checkNotRunning(dir); err != nil {
		return err
	}
	_, err := verifyRaftDir(dir, region, slog.New(slog.DiscardHandler))
	return err
}

// checkOpened cross-checks raft-wal, once open, against the scan, reads every entry
// back through it (decoding each), and reports a torn last write it dropped.
func (v *verified) checkOpened(logs raft.LogStore, dir, region string, log *slog.Logger) error {
	damaged := func(path, problem string) error {
		return &DamageError{Path: path, Problem: problem, DataDir: filepath.Dir(dir), Region: region}
	}
	first, err := logs.FirstIndex()
	if err != nil {
		return fmt.Errorf("read the raft log's first index: %w", err)
	}
	last, err := logs.LastIndex()
	if err != nil {
		return fmt.Errorf("read the raft log's last index: %w", err)
	}
	if first != v.wal.first || last != v.wal.last {
		return damaged(v.wal.dir, fmt.Sprintf("raft-wal serves entries %d..%d, its files hold %d..%d", first, last, v.wal.first, v.wal.last))
	}
	var l raft.Log
	for i := first; i <= last && last > 0; i++ {
		if err := logs.GetLog(i, &l); err != nil || l.Index != i {
			path := v.wal.dir
			if s := v.wal.segmentFor(i); s != nil {
				path = s.path
			}
			if err == nil {
				err = fmt.Errorf("it reads back as entry %d", l.Index)
			}
			return damaged(path, fmt.Sprintf("entry %d is unreadable: %v", i, err))
		}
	}
	if v.droppedIn != "" {
		log.Warn("raft log: dropped a torn write at the end of the tail segment (never acknowledged: beyond this node's evidence)",
			"file", v.droppedIn, "from", v.droppedFrom, "to", v.droppedTo)
	}
	return nil
}

// evidenceWriter keeps <data-dir>/raft/log-evidence up to date while Run runs.
type evidenceWriter struct {
	path string
	log  *slog.Logger
	last logEvidence // last written (or read at open)
}

// record writes the evidence when this node applied more than it last recorded. The
// applied index is durable here: a follower applies only what it stored, a leader
// only what it stored and a quorum acknowledged. It never lowers Index.
func (e *evidenceWriter) record(r *raft.Raft, logs raft.LogStore, cluster string) {
	idx := r.AppliedIndex()
	// The cluster id never changes: the first one recorded stays.
	newCluster := e.last.Cluster == "" && cluster != ""
	if idx <= e.last.Index && !newCluster {
		return
	}
	ev := e.last
	if newCluster {
		ev.Cluster = cluster
	}
	if idx > ev.Index {
		var l raft.Log
		if err := logs.GetLog(idx, &l); err != nil {
			// Only in a snapshot just installed: recorded once entries follow it.
			return
		}
		ev.Index, ev.Term = idx, l.Term
	}
	if err := runtime.WriteFileAtomic(e.path, encodeEvidence(ev), 0o600); err != nil {
		e.log.Warn("record raft log evidence", "err", err)
		return
	}
	e.last = ev
}

// writer returns the evidence writer for dir, starting from what was read at open.
func (v *verified) writer(dir string, log *slog.Logger) *evidenceWriter {
	e := &evidenceWriter{path: filepath.Join(dir, evidenceFile), log: log}
	if v.evidence != nil {
		e.last = *v.evidence
	}
	return e
}

// known is the evidence as last read or written; nil when there is none (or e is nil).
func (e *evidenceWriter) known() *logEvidence {
	if e == nil || e.last.Index == 0 {
		return nil
	}
	ev := e.last
	return &ev
}

// keepEvidence records the evidence every evidenceEvery while Raft runs. Run calls the
// returned stop after Raft shut down: it waits for the goroutine and records the last
// applied index (not after a simulated SIGKILL).
func (n *Node) keepEvidence(r *raft.Raft, st *stores) (stop func()) {
	e := st.evidence
	if e == nil {
		return func() {}
	}
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(evidenceEvery)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				n.recordEvidence(r, st)
			}
		}
	}()
	return func() {
		close(quit)
		<-done
		if !n.abrupt.Load() {
			n.recordEvidence(r, st)
		}
	}
}

func (n *Node) recordEvidence(r *raft.Raft, st *stores) {
	st.evidence.record(r, st.logs, n.fsm.ClusterID())
	if ev := st.evidence.known(); ev != nil {
		n.had.Store(ev)
	}
}

// hadLog reports whether this node's evidence says it had a log while Raft now has no
// state: it must never bootstrap a new cluster over that identity. Open refuses such
// a log already; this guards the control loop all the same.
func (n *Node) hadLog(ls *loopState) bool {
	ev := n.had.Load()
	if ev == nil || ev.Index == 0 {
		return false
	}
	if reason := "raft log lost"; ls.waitReason != reason {
		ls.waitReason = reason
		n.log.Error("this node had a raft log up to its evidence but raft has no state: not bootstrapping a new cluster",
			"index", ev.Index, "cluster", ev.Cluster)
	}
	return true
}

// SetAside moves this node's Raft state (<dataDir>/raft) out of the way, to
// <dataDir>/raft.damaged-<UTC time>, kept for inspection: the way back from a
// DamageError (`murmur operator rejoin`). Like Recover it runs with the agent stopped,
// and refuses a data dir of another region. The caller also drops the node id, so the
// node rejoins its region as a new member (docs/regions.md, "Damage to the Raft log").
func SetAside(dataDir, region string, now time.Time) (string, error) {
	dir := filepath.Join(dataDir, "raft")
	if _, err := os.Stat(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("%s holds no raft state: nothing to set aside (is --data-dir right?)", dataDir)
		}
		return "", err
	}
	if _, err := os.Stat(filepath.Join(dir, regionMarker)); err == nil {
		if err := checkRegionMarker(dir, region, false); err != nil {
			return "", err
		}
	}
	if err := checkNotRunning(dir); err != nil {
		return "", err
	}
	to := filepath.Join(dataDir, "raft.damaged-"+now.UTC().Format("20060102T150405Z"))
	for i := 2; ; i++ {
		if _, err := os.Lstat(to); errors.Is(err, fs.ErrNotExist) {
			break
		}
		to = filepath.Join(dataDir, fmt.Sprintf("raft.damaged-%s-%d", now.UTC().Format("20060102T150405Z"), i))
	}
	if err := os.Rename(dir, to); err != nil {
		return "", fmt.Errorf("set aside %s: %w", dir, err)
	}
	d, err := os.Open(dataDir)
	if err != nil {
		return to, fmt.Errorf("fsync %s: %w", dataDir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return to, fmt.Errorf("fsync %s: %w", dataDir, err)
	}
	return to, nil
}
