package intents

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/murmur-edge/murmur/policy"
)

// Message types: the first byte of every payload of kind gossip.KindIntents.
const (
	msgAnnounce byte = 1 // broadcast: an intent version exists (no body)
	msgFetch    byte = 2 // reliable: send me these names
	msgRecords  byte = 3 // reliable: records (bodies), the answer to a fetch
	msgAck      byte = 4 // reliable: I have stored these versions
)

// Wire limits.
const (
	maxAnnounceBytes = 1024    // gossip.MaxBroadcastPayload
	maxMessageBytes  = 4 << 20 // gossip.MaxReliablePayload
	maxBatchBytes    = 3 << 20 // records per answer message, so one 1 MiB intent always fits
	maxFetchNames    = 512
	maxDigestBytes   = 256 << 10
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

// digest is the push/pull state: every name this node stores (tombstones included)
// with its version. Hashes are left out to keep it small; versions decide.
type digest struct {
	Entries []ack `codec:"e"`
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
	default:
		return nil, fmt.Errorf("%w: unknown message type %d", errDecode, b[0])
	}
	if err := decodeInto(b[1:], v); err != nil {
		return nil, err
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
	err := decodeInto(b, &d)
	return d, err
}
