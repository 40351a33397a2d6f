package intents

import (
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
				policy.CheckRecord(&r.Records[i], nil, time.UnixMilli(1732291200123), time.Minute)
			}
		}
	})
}

// FuzzDecodeDigest: push/pull digests from peers never panic the decoder.
func FuzzDecodeDigest(f *testing.F) {
	b, _ := encodeDigest(digest{Entries: []ack{{Name: "a", Version: policy.Version{Wall: 1, Node: "n"}}}})
	f.Add(b)
	f.Add([]byte{0x81, 0xa1, 'e', 0xdd, 0x7f, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		decodeDigest(b)
	})
}
