package logs

import (
	"errors"
	"fmt"

	"github.com/hashicorp/go-msgpack/v2/codec"
	"github.com/murmur-edge/murmur/runtime"
)

// Message types: the first byte of every payload of gossip kind KindLogs.
const (
	msgPull  byte = 1 // asking node → serving node: open a session, or the next chunk
	msgChunk byte = 2 // serving node → asking node
	msgClose byte = 3 // asking node → serving node: done with the session
)

// Limits of what a node accepts from a peer.
const (
	// MaxMessageBytes bounds one message (gossip's reliable channel allows 4 MiB).
	MaxMessageBytes = 4 << 20
	// MaxChunkBytes bounds the output one chunk carries.
	MaxChunkBytes = 1 << 20
	maxFrames     = 4096
	maxName       = 253
	maxErrorLen   = 2048
	// MaxTail and MaxBacklogBytes bound Options.Tail and Options.MaxBytes.
	MaxTail         = 1_000_000
	MaxBacklogBytes = 16 << 20
)

// Codes of a chunk that ends a session with an error.
const (
	codeOK         uint8 = 0
	codeNoInstance uint8 = 1 // runtime.ErrNoInstance on the serving node
	codeNoLogs     uint8 = 2 // runtime.ErrNoLogs
	codeBusy       uint8 = 3 // the serving node serves too many sessions
	codeGone       uint8 = 4 // no such session (it expired)
	codeFailed     uint8 = 5 // reading the output failed
)

// Options are runtime.LogOptions on the wire.
type Options struct {
	Stdout   bool  `codec:"o,omitempty"`
	Stderr   bool  `codec:"e,omitempty"`
	Tail     int   `codec:"t"`
	MaxBytes int64 `codec:"m,omitempty"`
	Follow   bool  `codec:"f,omitempty"`
}

// LogOptions converts to the runtime's options.
func (o Options) LogOptions() runtime.LogOptions {
	return runtime.LogOptions{Stdout: o.Stdout, Stderr: o.Stderr, Tail: o.Tail, MaxBytes: o.MaxBytes, Follow: o.Follow}
}

// Check reports options out of bounds, naming the field.
func (o Options) Check() error {
	switch {
	case !o.Stdout && !o.Stderr:
		return errors.New("stream: ask for stdout, stderr or both")
	case o.Tail < -1 || o.Tail > MaxTail:
		return fmt.Errorf("tail: %d lines: use 0 to %d, or -1 for all", o.Tail, MaxTail)
	case o.MaxBytes < 0 || o.MaxBytes > MaxBacklogBytes:
		return fmt.Errorf("max_bytes: %d: use 0 (no cap) to %d", o.MaxBytes, MaxBacklogBytes)
	}
	return nil
}

// Pull opens a session (Session 0, with Instance and Options) or asks an open
// session for the chunk after Ack, the highest sequence number received.
type Pull struct {
	ID       uint64  `codec:"q"` // echoed by the answer
	Session  uint64  `codec:"s,omitempty"`
	Ack      uint64  `codec:"a,omitempty"`
	Instance string  `codec:"i,omitempty"`
	Options  Options `codec:"o"`
}

// Frame is a piece of one stream's output.
type Frame struct {
	Stream runtime.LogStream `codec:"s"`
	Data   []byte            `codec:"d"`
}

// Chunk answers a Pull: the output after the acknowledged chunk (possibly none
// yet). Done ends the session: after its frames, the output ended (Err empty) or
// failed (Err, Code).
type Chunk struct {
	ID      uint64  `codec:"q"`
	Session uint64  `codec:"s"`
	Seq     uint64  `codec:"n"`
	Frames  []Frame `codec:"f,omitempty"`
	Done    bool    `codec:"d,omitempty"`
	Err     string  `codec:"e,omitempty"`
	Code    uint8   `codec:"c,omitempty"`
}

// Close ends a session the asking node no longer needs.
type Close struct {
	Session uint64 `codec:"s"`
}

func newCodec() *codec.MsgpackHandle {
	h := &codec.MsgpackHandle{}
	h.MaxInitLen = 1024 // never pre-allocate what a hostile length prefix claims
	h.MaxDepth = 8
	h.RawToString = true
	h.WriteExt = true
	return h
}

// ErrMessage marks bytes that are not a valid message.
var ErrMessage = errors.New("bad logs message")

// Encode encodes a Pull, Chunk or Close.
func Encode(v any) ([]byte, error) {
	var typ byte
	switch v.(type) {
	case Pull, *Pull:
		typ = msgPull
	case Chunk, *Chunk:
		typ = msgChunk
	case Close, *Close:
		typ = msgClose
	default:
		return nil, fmt.Errorf("encode %T: not a logs message", v)
	}
	var body []byte
	if err := codec.NewEncoderBytes(&body, newCodec()).Encode(v); err != nil {
		return nil, fmt.Errorf("encode %T: %w", v, err)
	}
	return append([]byte{typ}, body...), nil
}

// Decode decodes and checks a message from a peer. It never panics on hostile input.
func Decode(b []byte) (msg any, err error) {
	if len(b) < 2 {
		return nil, fmt.Errorf("%w: %d bytes", ErrMessage, len(b))
	}
	if len(b) > MaxMessageBytes {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d", ErrMessage, len(b), MaxMessageBytes)
	}
	defer func() {
		if r := recover(); r != nil {
			msg, err = nil, fmt.Errorf("%w: %v", ErrMessage, r)
		}
	}()
	dec := codec.NewDecoderBytes(b[1:], newCodec())
	switch b[0] {
	case msgPull:
		var p Pull
		if err := dec.Decode(&p); err != nil {
			return nil, fmt.Errorf("%w: pull: %v", ErrMessage, err)
		}
		if p.Session == 0 {
			if p.Instance == "" || len(p.Instance) > maxName {
				return nil, fmt.Errorf("%w: pull opening a session without a valid instance", ErrMessage)
			}
			if err := p.Options.Check(); err != nil {
				return nil, fmt.Errorf("%w: pull: %v", ErrMessage, err)
			}
		}
		return p, nil
	case msgChunk:
		var c Chunk
		if err := dec.Decode(&c); err != nil {
			return nil, fmt.Errorf("%w: chunk: %v", ErrMessage, err)
		}
		return c, c.check()
	case msgClose:
		var c Close
		if err := dec.Decode(&c); err != nil {
			return nil, fmt.Errorf("%w: close: %v", ErrMessage, err)
		}
		return c, nil
	}
	return nil, fmt.Errorf("%w: unknown type %d", ErrMessage, b[0])
}

func (c Chunk) check() error {
	if len(c.Frames) > maxFrames {
		return fmt.Errorf("%w: chunk of %d frames, the limit is %d", ErrMessage, len(c.Frames), maxFrames)
	}
	n := 0
	for _, f := range c.Frames {
		if f.Stream != runtime.LogStdout && f.Stream != runtime.LogStderr {
			return fmt.Errorf("%w: chunk: frame of stream %d", ErrMessage, f.Stream)
		}
		n += len(f.Data)
	}
	if n > MaxChunkBytes {
		return fmt.Errorf("%w: chunk of %d bytes, the limit is %d", ErrMessage, n, MaxChunkBytes)
	}
	if len(c.Err) > maxErrorLen || c.Code > codeFailed || (c.Code != codeOK && !c.Done) {
		return fmt.Errorf("%w: chunk with a bad error", ErrMessage)
	}
	return nil
}
