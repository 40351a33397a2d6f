package intents

import (
	"strings"
	"testing"
	"time"

	"github.com/murmur-edge/murmur/policy"
)

// FuzzDecodeMsg: peer payloads never panic the decoder, and what decodes re-encodes.
func FuzzDecodeMsg(f *testing.F) {
	v := policy.Version{Wall: 1732291200123, Counter: 4, Node: "node-a"}
	for _, m := range []struct {
		typ byte
		v   any
	}{
		{msgAnnounce, announce{Name: "vision", Version: v, Hash: "ab"}},
		{msgFetch, fetch{Names: []string{"a", "b"}}},
		{msgRecords, records{Records: []policy.Record{{Name: "a", Version: v, Body: []byte(`{}`), Signature: &policy.Signature{KeyID: "k", Value: "v"}}}}},
		{msgAck, acks{Acks: []ack{{Name: "a", Version: v}}}},
		{msgBucketsReq, bucketsReq{N: 16, Buckets: []uint32{0, 15}}},
		{msgBuckets, bucketEntries{Entries: []ack{{Name: "a", Version: v}}}},
	} {
		b, err := encodeMsg(m.typ, m.v)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{msgRecords, 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{9})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeMsg(b)
		if err != nil {
			return
		}
		if _, err := encodeMsg(b[0], m); err != nil {
			t.Fatalf("re-encode %T: %v", m, err)
		}
		// Records go through the full check; it must not panic either.
		if r, ok := m.(*records); ok {
			for i := range r.Records {
				policy.CheckRecord(&r.Records[i], nil, time.UnixMilli(1732291200123), time.Minute, 24*time.Hour)
			}
		}
	})
}

// FuzzDecodeDigest: push/pull digests from peers never panic the decoder.
func FuzzDecodeDigest(f *testing.F) {
	b, _ := encodeDigest(digest{Entries: []ack{{Name: "a", Version: policy.Version{Wall: 1, Node: "n"}}}})
	f.Add(b)
	b, _ = encodeDigest(digest{Count: 1, Buckets: make([]uint64, minDigestBuckets)})
	f.Add(b)
	f.Add([]byte{0x81, 0xa1, 'e', 0xdd, 0x7f, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := decodeDigest(b)
		if err == nil && len(d.Buckets) > 0 && !validBucketCount(len(d.Buckets)) {
			t.Fatalf("decoded a digest of %d buckets", len(d.Buckets))
		}
	})
}

// FuzzSignatureHeader: a DELETE's Murmur-Signature header never panics its parser, and
// what it accepts is written back the same way (the version with its ':' included).
func FuzzSignatureHeader(f *testing.F) {
	f.Add("3f2a0b1c2d3e4f50:AAAA==:1732291200123.0@key:3f2a0b1c2d3e4f50")
	f.Add("3f2a0b1c2d3e4f50:AAAA==")
	f.Add("nocolon")
	f.Add(":::")
	f.Fuzz(func(t *testing.T, h string) {
		sig, err := parseSignatureHeader(h)
		if err != nil || sig == nil {
			return
		}
		back := sig.KeyID + ":" + sig.Value
		if sig.Version != "" || strings.Count(h, ":") >= 2 {
			back += ":" + sig.Version
		}
		if back != h {
			t.Fatalf("parse(%q) = %+v, written back as %q", h, sig, back)
		}
		sig.SignedVersion() // must not panic either
	})
}
