package gossip

import (
	"bytes"
	"errors"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func validFrames(t testing.TB) [][]byte {
	rec, err := encode(Record{Node: "n1", Epoch: 1, Seq: 2, CPU: 0.5, State: map[string]string{"k": "v"}})
	if err != nil {
		t.Fatal(err)
	}
	bc, err := encodeFrame(frameBroadcast, KindIntents, envelope{Key: "k", From: "n1", Body: []byte("hi")})
	if err != nil {
		t.Fatal(err)
	}
	dm, err := encodeFrame(frameDirect, KindIntents, envelope{From: "n1", Body: []byte("hi")})
	if err != nil {
		t.Fatal(err)
	}
	nt, err := encodeFrame(frameNotice, 0, envelope{From: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	return [][]byte{append([]byte{frameRecord}, rec...), bc, dm, nt}
}

// A notice names its sender and is small: a larger one is refused before decoding.
func TestNoticeFrame(t *testing.T) {
	b, err := encodeFrame(frameNotice, 0, envelope{From: "n1"})
	if err != nil {
		t.Fatal(err)
	}
	frame, _, env, err := decodeFrame(b)
	if err != nil || frame != frameNotice || env.From != "n1" {
		t.Fatalf("decodeFrame = %d %+v %v, want a notice from n1", frame, env, err)
	}
	big, err := encodeFrame(frameNotice, 0, envelope{From: "n1", Body: make([]byte, maxNoticeBytes)})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := decodeFrame(big); !errors.Is(err, ErrDecode) {
		t.Fatalf("a %d-byte notice decoded (err %v), want ErrDecode", len(big), err)
	}
	anon, err := encodeFrame(frameNotice, 0, envelope{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := decodeFrame(anon); !errors.Is(err, ErrDecode) {
		t.Fatalf("a notice without a sender decoded (err %v), want ErrDecode", err)
	}
}

func TestWireRoundTrip(t *testing.T) {
	want := Record{Node: "n1", Epoch: 3, Seq: 9, CPU: 0.25, Memory: 0.5, Instances: 4, Health: HealthOK, Drivers: []string{"exec"}, State: map[string]string{"a": "b"}, Left: true}
	b, err := encode(want)
	if err != nil {
		t.Fatal(err)
	}
	got, err := DecodeRecord(b)
	if err != nil {
		t.Fatal(err)
	}
	if got.Node != want.Node || got.Seq != want.Seq || got.CPU != want.CPU || got.State["a"] != "b" || !got.Left || got.Drivers[0] != "exec" {
		t.Errorf("DecodeRecord(encode(%+v)) = %+v", want, got)
	}
	meta := Meta{ID: "x", Region: "r", HTTPAddr: "127.0.0.1:1", RaftAddr: "127.0.0.1:2", Version: "v", Eligible: true, Labels: map[string]string{"zone": "a"},
		MilliCPU: 2000, MemoryBytes: 1 << 30}
	mb, err := encodeMeta(meta)
	if err != nil {
		t.Fatal(err)
	}
	gm, err := DecodeMeta(mb)
	if err != nil || gm.ID != "x" || gm.Labels["zone"] != "a" || !gm.Eligible || gm.MilliCPU != 2000 || gm.MemoryBytes != 1<<30 {
		t.Errorf("DecodeMeta = %+v, %v", gm, err)
	}
	big := map[string]string{}
	for i := 0; i < 40; i++ {
		big[string(rune('a'+i%26))+string(rune('a'+i/26))] = "0123456789abcdef"
	}
	if _, err := encodeMeta(Meta{Labels: big}); err == nil {
		t.Error("encodeMeta with 40 labels: got nil error, want over-limit error")
	}
}

func TestMalformedPayloadsAreCountedAndDropped(t *testing.T) {
	reg := prometheus.NewRegistry()
	g, err := New(Config{Name: "me", Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string][]byte{
		"empty":             {},
		"unknown frame":     {99, 1, 2},
		"record garbage":    {frameRecord, 0xc1, 0xff},
		"record no name":    append([]byte{frameRecord}, mustEncode(t, Record{Epoch: 1})...),
		"broadcast no kind": {frameBroadcast},
		"broadcast junk":    {frameBroadcast, 32, 0xde, 0xad},
		"oversized record":  append([]byte{frameRecord}, bytes.Repeat([]byte{0xa0}, maxRecordBytes+1)...),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			before := totalDecodeErrors(g)
			g.handleMessage(b)
			after := totalDecodeErrors(g)
			if after != before+1 {
				t.Errorf("decode errors went from %v to %v, want +1", before, after)
			}
		})
	}
	g.handlePushPull([]byte{0x00, 0x01})
	if v := testutil.ToFloat64(g.metrics.decodeErrors.WithLabelValues("pushpull")); v != 1 {
		t.Errorf("pushpull decode errors = %v, want 1", v)
	}
	if n := len(g.Members()); n != 1 {
		t.Errorf("members after garbage = %d, want 1 (only self)", n)
	}
}

func TestDelegateNeverBlocks(t *testing.T) {
	g, err := New(Config{Name: "me"})
	if err != nil {
		t.Fatal(err)
	}
	d := &delegate{g: g}
	// Nobody drains the queue: the delegate must drop and count, not block.
	for i := 0; i < cap(g.inbound)+10; i++ {
		d.NotifyMsg([]byte{frameRecord})
	}
	if v := testutil.ToFloat64(g.metrics.dropped.WithLabelValues("inbound_queue_full")); v != 10 {
		t.Errorf("dropped = %v, want 10", v)
	}
}

func mustEncode(t *testing.T, v any) []byte {
	b, err := encode(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func totalDecodeErrors(g *Gossip) float64 {
	sum := 0.0
	for _, typ := range []string{"record", "broadcast", "direct", "pushpull", "meta", "unknown"} {
		sum += testutil.ToFloat64(g.metrics.decodeErrors.WithLabelValues(typ))
	}
	return sum
}

func FuzzDecodeFrame(f *testing.F) {
	for _, b := range validFrames(f) {
		f.Add(b)
	}
	f.Add([]byte{frameBroadcast, 32, 0x81, 0xa1, 0x62, 0xc5, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		frame, _, env, err := decodeFrame(b)
		if err != nil {
			if !errors.Is(err, ErrDecode) {
				t.Fatalf("error %v does not wrap ErrDecode", err)
			}
			return
		}
		if frame == frameRecord {
			_, _ = DecodeRecord(env.Body)
		}
	})
}

func FuzzDecodeMeta(f *testing.F) {
	b, _ := encodeMeta(Meta{ID: "x", Region: "r", Labels: map[string]string{"a": "b"}})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = DecodeMeta(b)
	})
}

func FuzzDecodePushPull(f *testing.F) {
	b, _ := encode(pushPull{From: "n", Records: []Record{{Node: "n", Epoch: 1}}, Ext: map[MessageKind][]byte{32: []byte("x")}})
	f.Add(b)
	f.Fuzz(func(t *testing.T, b []byte) {
		_, _ = decodePushPull(b)
	})
}

func TestSuspectFromOwnProbes(t *testing.T) {
	g, err := New(Config{Name: "me"})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	w := &logWriter{log: g.log, suspect: func(n string) { got = append(got, n) }}
	_, _ = w.Write([]byte("[INFO] memberlist: Suspect n-7.site has failed, no acks received\n"))
	_, _ = w.Write([]byte("[DEBUG] memberlist: Failed UDP ping: n2 (timeout reached)\n"))
	if len(got) != 1 || got[0] != "n-7.site" {
		t.Fatalf("suspects parsed from memberlist's log = %q, want [n-7.site]", got)
	}
	g.applyEvent(nodeEvent{name: "n-7.site", status: StatusAlive})
	g.applyEvent(nodeEvent{name: "n-7.site", status: StatusSuspect})
	if s := statusIn(g, "n-7.site"); s != StatusSuspect {
		t.Errorf("after a failed probe: %q, want suspect", s)
	}
	g.applyEvent(nodeEvent{name: "n-7.site", status: StatusDead})
	g.applyEvent(nodeEvent{name: "n-7.site", status: StatusSuspect})
	if s := statusIn(g, "n-7.site"); s != StatusDead {
		t.Errorf("a late suspicion of a dead node: %q, want it to stay dead", s)
	}
}

func statusIn(g *Gossip, name string) string {
	for _, m := range g.Members() {
		if m.Name == name {
			return m.Status
		}
	}
	return ""
}

// A node that comes back with a wiped data dir has a new id and restarts its boot
// counter: its records must replace the old identity's, and late records of the old
// identity must not come back.
func TestRecordsOfANewIdentityWin(t *testing.T) {
	g, err := New(Config{Name: "me"})
	if err != nil {
		t.Fatal(err)
	}
	oldMeta, _ := encodeMeta(Meta{ID: "old", Region: "r"})
	newMeta, _ := encodeMeta(Meta{ID: "new", Region: "r"})
	g.applyEvent(nodeEvent{name: "n1", status: StatusAlive, meta: oldMeta})
	if !g.mergeRecord(Record{Node: "n1", ID: "old", Epoch: 57, Seq: 9, CPU: 0.9}) {
		t.Fatal("first record of the old identity not stored")
	}
	g.applyEvent(nodeEvent{name: "n1", status: StatusAlive, meta: newMeta})
	if !g.mergeRecord(Record{Node: "n1", ID: "new", Epoch: 1, Seq: 1, CPU: 0.1}) {
		t.Fatal("a record of the new identity (boot counter 1) was refused")
	}
	if g.mergeRecord(Record{Node: "n1", ID: "old", Epoch: 57, Seq: 10, CPU: 0.9}) {
		t.Error("a late record of the old identity replaced the new one")
	}
	for _, m := range g.Members() {
		if m.Name == "n1" && m.Load.CPU != 0.1 {
			t.Errorf("n1 load = %v, want the new identity's 0.1", m.Load.CPU)
		}
	}
}
