package gossip

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

// FuzzKeyringMessage: KindKeyring carries peers' bytes; decodeKeyMessage must never
// panic, and what it accepts must survive a round trip and respect the limits.
func FuzzKeyringMessage(f *testing.F) {
	k16 := []byte("0123456789abcdef")
	k32 := bytes.Repeat([]byte{7}, 32)
	for _, m := range []any{
		keyRequest{ID: 1, Op: KeyList},
		keyRequest{ID: 2, Op: KeyInstall, Key: k32},
		keyRequest{ID: 3, Op: KeyUse, Key: k16},
		keyRequest{ID: 4, Op: KeyRemove, Key: k16},
		keyResponse{ID: 2, Keys: [][]byte{k32, k16}},
		keyResponse{ID: 3, Keys: [][]byte{k16}, Error: "the key is not installed"},
		keyResponse{ID: 5, Error: "gossip encryption is off on n1"},
	} {
		b, err := encodeKeyMessage(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{keyMsgRequest, 0xdf, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{keyMsgResponse, 0x93, 0x01, 0xdd, 0xff, 0xff, 0xff, 0xff})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := decodeKeyMessage(b)
		if err != nil {
			if !errors.Is(err, ErrDecode) {
				t.Fatalf("error %v is not ErrDecode", err)
			}
			return
		}
		switch m := m.(type) {
		case keyRequest:
			if !m.Op.valid() || (m.Op != KeyList && CheckKey(m.Key) != nil) {
				t.Fatalf("accepted a bad request %+v", m)
			}
		case keyResponse:
			if len(m.Keys) > MaxKeys || len(m.Error) > maxKeyErrorBytes {
				t.Fatalf("accepted an answer over the limits: %d keys, %d bytes of error", len(m.Keys), len(m.Error))
			}
		default:
			t.Fatalf("decoded %T", m)
		}
		again, err := encodeKeyMessage(m)
		if err != nil {
			t.Fatalf("re-encode %T: %v", m, err)
		}
		if _, err := decodeKeyMessage(again); err != nil || again[0] != b[0] {
			t.Fatalf("round trip of %T: type %d → %d, err %v", m, b[0], again[0], err)
		}
	})
}

func TestKeyringMessageRefuses(t *testing.T) {
	k16 := []byte("0123456789abcdef")
	cases := map[string]any{
		"unknown op":        keyRequest{ID: 1, Op: "rotate", Key: k16},
		"install no key":    keyRequest{ID: 1, Op: KeyInstall},
		"use short key":     keyRequest{ID: 1, Op: KeyUse, Key: k16[:5]},
		"list with a key":   keyRequest{ID: 1, Op: KeyList, Key: k16},
		"answer empty":      keyResponse{ID: 1},
		"answer bad key":    keyResponse{ID: 1, Keys: [][]byte{k16[:3]}},
		"answer many keys":  keyResponse{ID: 1, Keys: bytes.Fields(bytes.Repeat(append(append([]byte{}, k16...), ' '), MaxKeys+1))},
		"answer long error": keyResponse{ID: 1, Error: strings.Repeat("x", maxKeyErrorBytes+1)},
	}
	for name, m := range cases {
		b, err := encodeKeyMessage(m)
		if err != nil {
			t.Fatalf("%s: encode: %v", name, err)
		}
		if got, err := decodeKeyMessage(b); err == nil {
			t.Errorf("%s: decodeKeyMessage accepted %+v", name, got)
		}
	}
	for name, b := range map[string][]byte{"empty": nil, "type only": {keyMsgRequest}, "unknown type": {9, 0x80}} {
		if _, err := decodeKeyMessage(b); !errors.Is(err, ErrDecode) {
			t.Errorf("%s: err = %v, want ErrDecode", name, err)
		}
	}
}
