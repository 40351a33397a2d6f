package intents

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"slices"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/murmur-edge/murmur/policy"
)

// Message types: the first byte of every payload of kind gossip.KindIntents.
const (
	msgAnnounce byte = 1 // broadcast: an intent version exists (no body)
	msgFetch    byte = 2 // reliable: send me these names
	msgRecords  byte = 3 // reliable: records (bodies), the answer to a fetch
	msgAck      byte = 4 // reliable: I have stored these versions
	// msgBucketsReq asks for the entries of some digest buckets whose summaries differ
	// (a reply to a push/pull digest); msgBuckets answers with them (a reply too).
	msgBucketsReq byte = 5
	msgBuckets    byte = 6
)

// Wire limits.
const (
	maxAnnounceBytes = 1024    // gossip.MaxBroadcastPayload
	maxMessageBytes  = 4 << 20 // gossip.MaxReliablePayload
	maxBatchBytes    = 3 << 20 // records per answer message, so one 1 MiB intent always fits
	maxFetchNames    = 512
	// maxDigestBytes bounds a push/pull digest. A node sends bucket summaries (at most
	// maxDigestBuckets × 9 bytes); one of an older version sends every name with its
	// version, about 220 bytes each at worst (63-byte names, long node names), so
	// 2000 of them (the default store limit) needs ~434 KB.
	maxDigestBytes = 1 << 20
	// Digest buckets: a digest summarises the store in B buckets (a power of two,
	// about digestPerBucket names each, within [minDigestBuckets, maxDigestBuckets]).
	minDigestBuckets = 16
	maxDigestBuckets = 4096
	digestPerBucket  = 4
)

// announce says that name is at version, with the body hash; receivers with a lower
// version fetch the body from the sender.
type announce struct {
	Name    string         `codec:"n"`
	Version policy.Version `codec:"v"`
	Hash    string         `codec:"h"`
}

type fetch struct {
	Names []string `codec:"n"`
}

type records struct {
	Records []policy.Record `codec:"r"`
}

type ack struct {
	Name    string         `codec:"n"`
	Version policy.Version `codec:"v"`
}

type acks struct {
	Acks []ack `codec:"a"`
}

// digest is the push/pull state. A node sends a summary of its store: Count names
// (tombstones included) hashed into len(Buckets) buckets by name; each bucket is the
// XOR of entryHash(name, version) over its names (bucketsOf). A peer computes the
// same over its own store with the same bucket count; where a bucket differs it asks
// for that bucket's entries (msgBucketsReq) and fetches what is newer. In a fleet in
// sync a digest is a few KB whatever the store holds, rather than every name.
//
// Entries, every name with its version, is what nodes of an older version send; it
// is still understood.
type digest struct {
	Entries []ack    `codec:"e,omitempty"`
	Count   int      `codec:"k,omitempty"`
	Buckets []uint64 `codec:"b,omitempty"`
}

// bucketsReq asks for the entries of Buckets (indices) out of N buckets.
type bucketsReq struct {
	N       int      `codec:"n"`
	Buckets []uint32 `codec:"b"`
}

// bucketEntries answers a bucketsReq: every name of the asked buckets with its version.
type bucketEntries struct {
	Entries []ack `codec:"e"`
}

// digestBucketCount is the bucket count for a store of n names: a power of two with
// about digestPerBucket names a bucket, within the limits.
func digestBucketCount(n int) int {
	b := minDigestBuckets
	for b < maxDigestBuckets && b*digestPerBucket < n {
		b *= 2
	}
	return b
}

// bucketOf is the bucket of name out of n (a power of two).
func bucketOf(name string, n int) int {
	h := fnv.New64a()
	h.Write([]byte(name))
	return int(h.Sum64() & uint64(n-1))
}

// entryHash identifies one name at one version.
func entryHash(name string, v policy.Version) uint64 {
	h := fnv.New64a()
	h.Write([]byte(name))
	var b [13]byte
	binary.BigEndian.PutUint64(b[:8], uint64(v.Wall))
	binary.BigEndian.PutUint32(b[8:12], v.Counter)
	h.Write(b[:])
	h.Write([]byte(v.Node))
	return h.Sum64()
}

// validBucketCount: a power of two within the limits.
func validBucketCount(n int) bool {
	return n >= minDigestBuckets && n <= maxDigestBuckets && n&(n-1) == 0
}

// mh is the immutable msgpack configuration shared by encoders and decoders.
var mh = func() *codec.MsgpackHandle {
	h := &codec.MsgpackHandle{}
	h.RawToString = true
	h.WriteExt = true
	h.MaxInitLen = 4096 // never pre-allocate from a peer's length header
	return h
}()

var errDecode = errors.New("decode intents message")

func encodeMsg(typ byte, v any) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteByte(typ)
	if err := codec.NewEncoder(&buf, mh).Encode(v); err != nil {
		return nil, fmt.Errorf("encode %T: %w", v, err)
	}
	return buf.Bytes(), nil
}

func decodeInto(b []byte, v any) (err error) {
	defer func() {
		if r := recover(); r != nil { // the codec panics on some malformed input
			err = fmt.Errorf("%w: %v", errDecode, r)
		}
	}()
	if err := codec.NewDecoderBytes(b, mh).Decode(v); err != nil {
		return fmt.Errorf("%w: %v", errDecode, err)
	}
	return nil
}

// decodeMsg decodes one payload into its typed message: *announce, *fetch, *records
// or *acks.
func decodeMsg(b []byte) (any, error) {
	if len(b) == 0 {
		return nil, fmt.Errorf("%w: empty payload", errDecode)
	}
	if len(b) > maxMessageBytes {
		return nil, fmt.Errorf("%w: %d bytes is over the %d byte limit", errDecode, len(b), maxMessageBytes)
	}
	var v any
	switch b[0] {
	case msgAnnounce:
		if len(b) > maxAnnounceBytes {
			return nil, fmt.Errorf("%w: announcement of %d bytes", errDecode, len(b))
		}
		v = &announce{}
	case msgFetch:
		v = &fetch{}
	case msgRecords:
		v = &records{}
	case msgAck:
		v = &acks{}
	case msgBucketsReq:
		v = &bucketsReq{}
	case msgBuckets:
		v = &bucketEntries{}
	default:
		return nil, fmt.Errorf("%w: unknown message type %d", errDecode, b[0])
	}
	if err := decodeInto(b[1:], v); err != nil {
		return nil, err
	}
	if r, ok := v.(*bucketsReq); ok && (!validBucketCount(r.N) || len(r.Buckets) > r.N || slices.ContainsFunc(r.Buckets, func(i uint32) bool { return int(i) >= r.N })) {
		return nil, fmt.Errorf("%w: request for %d of %d digest buckets", errDecode, len(r.Buckets), r.N)
	}
	if f, ok := v.(*fetch); ok && len(f.Names) > maxFetchNames {
		return nil, fmt.Errorf("%w: fetch of %d names", errDecode, len(f.Names))
	}
	return v, nil
}

func encodeDigest(d digest) ([]byte, error) {
	var buf bytes.Buffer
	if err := codec.NewEncoder(&buf, mh).Encode(d); err != nil {
		return nil, fmt.Errorf("encode digest: %w", err)
	}
	return buf.Bytes(), nil
}

func decodeDigest(b []byte) (digest, error) {
	var d digest
	if len(b) > maxDigestBytes {
		return d, fmt.Errorf("%w: digest of %d bytes is over the %d byte limit", errDecode, len(b), maxDigestBytes)
	}
	if err := decodeInto(b, &d); err != nil {
		return digest{}, err
	}
	if len(d.Buckets) > 0 && !validBucketCount(len(d.Buckets)) {
		return digest{}, fmt.Errorf("%w: digest of %d buckets; want a power of two from %d to %d", errDecode, len(d.Buckets), minDigestBuckets, maxDigestBuckets)
	}
	return d, nil
}
