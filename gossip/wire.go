package gossip

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/hashicorp/go-msgpack/v2/codec"
)

// Frame types: the first byte of every memberlist user message murmur sends.
const (
	frameRecord    byte = 1 // a Record broadcast
	frameBroadcast byte = 2 // an extension broadcast: kind, envelope{Key, From, Body}
	frameDirect    byte = 3 // an extension direct message: kind, envelope{From, Body}
	frameNotice    byte = 4 // "my probe of you failed": kind 0, envelope{From} (notice.go)
)

// Size limits of what the gossip layer accepts from the network.
const (
	// MaxBroadcastPayload is the largest extension payload Broadcast takes. memberlist
	// packs broadcasts into UDP packets of ~1400 bytes.
	MaxBroadcastPayload = 1024
	// MaxReliablePayload is the largest payload SendReliable takes.
	MaxReliablePayload = 4 << 20
	// maxRecordBytes bounds an encoded Record (state map included).
	maxRecordBytes = 8 << 10
	// maxMetaBytes is memberlist's node meta limit.
	maxMetaBytes = 512
	// maxPushPullBytes bounds the push/pull state of one node.
	maxPushPullBytes = 16 << 20
	// maxStateEntries bounds Record.State.
	maxStateEntries = 32
	// maxNoticeBytes bounds a suspicion notice (a sender's name).
	maxNoticeBytes = 512
)

var mh = func() *codec.MsgpackHandle {
	h := &codec.MsgpackHandle{}
	h.RawToString = true
	h.WriteExt = true
	return h
}()

// ErrDecode marks bytes that do not decode into the expected wire value.
var ErrDecode = errors.New("decode")

func encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	if err := codec.NewEncoder(&buf, mh).Encode(v); err != nil {
		return nil, fmt.Errorf("encode %T: %w", v, err)
	}
	return buf.Bytes(), nil
}

func decode(b []byte, limit int, v any) (err error) {
	if len(b) > limit {
		return fmt.Errorf("%w %T: %d bytes is over the %d byte limit", ErrDecode, v, len(b), limit)
	}
	defer func() {
		// The codec panics on some malformed input; a peer's bytes must never crash us.
		if r := recover(); r != nil {
			err = fmt.Errorf("%w %T: %v", ErrDecode, v, r)
		}
	}()
	if err := codec.NewDecoderBytes(b, mh).Decode(v); err != nil {
		return fmt.Errorf("%w %T: %v", ErrDecode, v, err)
	}
	return nil
}

// Meta is the node meta carried in memberlist alive messages (<= 512 bytes). It holds
// what does not change while an agent runs.
type Meta struct {
	ID       string            `codec:"i"`
	Region   string            `codec:"r"`
	HTTPAddr string            `codec:"h,omitempty"`
	RaftAddr string            `codec:"f,omitempty"`
	Version  string            `codec:"v,omitempty"`
	Eligible bool              `codec:"e,omitempty"`
	Labels   map[string]string `codec:"l,omitempty"`
	// Capacity the scheduler may hand out on the node: millicores and bytes.
	MilliCPU    int64 `codec:"c,omitempty"`
	MemoryBytes int64 `codec:"m,omitempty"`
}

func encodeMeta(m Meta) ([]byte, error) {
	b, err := encode(m)
	if err != nil {
		return nil, err
	}
	if len(b) > maxMetaBytes {
		return nil, fmt.Errorf("node meta is %d bytes, over memberlist's %d byte limit: use fewer or shorter --label values", len(b), maxMetaBytes)
	}
	return b, nil
}

// DecodeMeta decodes node meta received from a peer.
func DecodeMeta(b []byte) (Meta, error) {
	var m Meta
	if len(b) == 0 {
		return m, fmt.Errorf("%w meta: empty", ErrDecode)
	}
	err := decode(b, maxMetaBytes, &m)
	return m, err
}

// Record is a node's load-and-health record, newest (Epoch, Seq) wins.
type Record struct {
	Node      string            `codec:"n"`
	ID        string            `codec:"id,omitempty"` // the node's id: a node with a wiped data dir is a new identity
	Epoch     uint64            `codec:"e"`            // grows with every agent start
	Seq       uint64            `codec:"s"`            // grows with every change within an epoch
	CPU       float64           `codec:"c"`            // fraction of capacity
	Memory    float64           `codec:"m"`            // fraction of capacity
	Instances int               `codec:"i"`
	Health    string            `codec:"h"`
	Drivers   []string          `codec:"d,omitempty"`
	State     map[string]string `codec:"k,omitempty"`
	// Left is set on the last record a node sends as it leaves gracefully. memberlist's
	// leave event does not say whether a node left or died, so this tells them apart.
	Left bool `codec:"l,omitempty"`
}

// newer reports whether r supersedes o.
func (r Record) newer(o Record) bool {
	if r.Epoch != o.Epoch {
		return r.Epoch > o.Epoch
	}
	return r.Seq > o.Seq
}

// DecodeRecord decodes a record received from a peer and checks its bounds.
func DecodeRecord(b []byte) (Record, error) {
	var r Record
	if err := decode(b, maxRecordBytes, &r); err != nil {
		return r, err
	}
	if r.Node == "" {
		return r, fmt.Errorf("%w record: no node name", ErrDecode)
	}
	if len(r.State) > maxStateEntries {
		return r, fmt.Errorf("%w record: %d state entries, limit %d", ErrDecode, len(r.State), maxStateEntries)
	}
	return r, nil
}

// envelope carries an extension message.
type envelope struct {
	Key  string `codec:"k,omitempty"`
	From string `codec:"f"`
	Body []byte `codec:"b"`
}

// decodeFrame splits a user message into its frame type, extension kind and envelope.
// For frameRecord, env.Body holds the encoded record.
func decodeFrame(b []byte) (frame byte, kind MessageKind, env envelope, err error) {
	if len(b) < 1 {
		return 0, 0, env, fmt.Errorf("%w frame: empty message", ErrDecode)
	}
	frame = b[0]
	switch frame {
	case frameRecord:
		env.Body = b[1:]
		return frame, 0, env, nil
	case frameBroadcast, frameDirect, frameNotice:
		if len(b) < 2 {
			return frame, 0, env, fmt.Errorf("%w frame: no kind byte", ErrDecode)
		}
		kind = MessageKind(b[1])
		limit := MaxReliablePayload + 1024
		switch frame {
		case frameBroadcast:
			limit = MaxBroadcastPayload + 512
		case frameNotice:
			limit = maxNoticeBytes
		}
		if err := decode(b[2:], limit, &env); err != nil {
			return frame, kind, env, err
		}
		if env.From == "" {
			return frame, kind, env, fmt.Errorf("%w frame: no sender", ErrDecode)
		}
		return frame, kind, env, nil
	default:
		return frame, 0, env, fmt.Errorf("%w frame: unknown frame type %d", ErrDecode, frame)
	}
}

func encodeFrame(frame byte, kind MessageKind, env envelope) ([]byte, error) {
	b, err := encode(env)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, len(b)+2)
	out = append(out, frame, byte(kind))
	return append(out, b...), nil
}

// pushPull is this node's part of a memberlist push/pull exchange.
type pushPull struct {
	From    string                 `codec:"f"`
	Records []Record               `codec:"r"`
	Ext     map[MessageKind][]byte `codec:"x,omitempty"`
}

// decodePushPull decodes a peer's push/pull state.
func decodePushPull(b []byte) (pushPull, error) {
	var p pushPull
	if err := decode(b, maxPushPullBytes, &p); err != nil {
		return p, err
	}
	if p.From == "" {
		return p, fmt.Errorf("%w push/pull: no sender", ErrDecode)
	}
	return p, nil
}
