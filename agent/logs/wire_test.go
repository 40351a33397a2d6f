package logs

import (
	"errors"
	"strings"
	"testing"

	"github.com/murmur-edge/murmur/runtime"
)

// FuzzDecode: peers' bytes on the logs channel; Decode must never panic, and what it
// accepts must encode and decode to the same message kind.
func FuzzDecode(f *testing.F) {
	for _, m := range []any{
		Pull{ID: 1, Instance: "web-4-0", Options: Options{Stdout: true, Stderr: true, Tail: -1, MaxBytes: 1 << 20, Follow: true}},
		Pull{ID: 2, Session: 7, Ack: 3},
		Chunk{ID: 2, Session: 7, Seq: 4, Frames: []Frame{{Stream: runtime.LogStdout, Data: []byte("hi\n")}, {Stream: runtime.LogStderr, Data: []byte("oops\n")}}},
		Chunk{ID: 3, Session: 7, Seq: 5, Done: true, Code: codeNoInstance, Err: `instance "x" is not on node n2`},
		Close{Session: 7},
	} {
		b, err := Encode(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{msgChunk, 0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{msgPull, 0x80})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := Decode(b)
		if err != nil {
			return
		}
		again, err := Encode(m)
		if err != nil {
			t.Fatalf("re-encode %T: %v", m, err)
		}
		if _, err := Decode(again); err != nil {
			t.Fatalf("decode of re-encoded %T: %v", m, err)
		}
		if again[0] != b[0] {
			t.Fatalf("kind changed: %d → %d", b[0], again[0])
		}
	})
}

func TestDecodeRefuses(t *testing.T) {
	many := make([]Frame, maxFrames+1)
	for i := range many {
		many[i] = Frame{Stream: runtime.LogStdout, Data: []byte("x")}
	}
	bad := map[string]any{
		"open without instance":  Pull{ID: 1, Options: Options{Stdout: true, Tail: -1}},
		"open without a stream":  Pull{ID: 1, Instance: "a", Options: Options{Tail: -1}},
		"tail below -1":          Pull{ID: 1, Instance: "a", Options: Options{Stdout: true, Tail: -2}},
		"tail too large":         Pull{ID: 1, Instance: "a", Options: Options{Stdout: true, Tail: MaxTail + 1}},
		"cap too large":          Pull{ID: 1, Instance: "a", Options: Options{Stdout: true, Tail: -1, MaxBytes: MaxBacklogBytes + 1}},
		"instance name too long": Pull{ID: 1, Instance: strings.Repeat("a", 300), Options: Options{Stdout: true, Tail: -1}},
		"stream 3 in a chunk":    Chunk{Frames: []Frame{{Stream: 3, Data: []byte("x")}}},
		"too many frames":        Chunk{Frames: many},
		"too many bytes":         Chunk{Frames: []Frame{{Stream: runtime.LogStdout, Data: make([]byte, MaxChunkBytes+1)}}},
		"error code not at end":  Chunk{Code: codeFailed, Err: "x"},
		"unknown code":           Chunk{Done: true, Code: 99},
	}
	for name, m := range bad {
		b, err := Encode(m)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if _, err := Decode(b); !errors.Is(err, ErrMessage) {
			t.Errorf("%s: Decode = %v, want ErrMessage", name, err)
		}
	}
	for name, b := range map[string][]byte{"empty": nil, "one byte": {msgPull}, "unknown type": {9, 0x80}} {
		if _, err := Decode(b); !errors.Is(err, ErrMessage) {
			t.Errorf("%s: Decode = %v, want ErrMessage", name, err)
		}
	}
}
