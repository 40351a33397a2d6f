package logs

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
)

func TestFramesRoundTrip(t *testing.T) {
	var b bytes.Buffer
	big := bytes.Repeat([]byte("x"), MaxFrameBytes+10)
	for _, f := range []struct {
		typ byte
		p   []byte
	}{{FrameStdout, []byte("hello\n")}, {FrameStderr, []byte("oops\n")}, {FrameStdout, big}, {FrameError, []byte("node n2 lost")}} {
		if err := WriteFrame(&b, f.typ, f.p); err != nil {
			t.Fatal(err)
		}
	}
	r := NewFrameReader(&b)
	var got []string
	total := 0
	for {
		typ, p, err := r.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if len(p) > MaxFrameBytes {
			t.Fatalf("frame of %d bytes", len(p))
		}
		if len(p) > 100 {
			total += len(p)
			got = append(got, "big")
			continue
		}
		got = append(got, string([]byte{'0' + typ})+":"+string(p))
	}
	// The big payload is split at MaxFrameBytes: its last 10 bytes come second.
	want := "1:hello\n|2:oops\n|big|1:xxxxxxxxxx|3:node n2 lost"
	if strings.Join(got, "|") != want || total != MaxFrameBytes {
		t.Errorf("frames %q (%d big bytes), want %q (%d)", got, total, want, MaxFrameBytes)
	}
}

func TestFrameReaderRefuses(t *testing.T) {
	cases := map[string]struct {
		in   []byte
		want error
	}{
		"type 0":          {[]byte{0, 0, 0, 0, 0, 0, 0, 1, 'x'}, ErrFrame},
		"type 4":          {[]byte{4, 0, 0, 0, 0, 0, 0, 1, 'x'}, ErrFrame},
		"reserved byte":   {[]byte{1, 0, 1, 0, 0, 0, 0, 1, 'x'}, ErrFrame},
		"over the limit":  {[]byte{1, 0, 0, 0, 0, 0x10, 0, 1}, ErrFrame},
		"short header":    {[]byte{1, 0, 0}, io.ErrUnexpectedEOF},
		"short payload":   {[]byte{1, 0, 0, 0, 0, 0, 0, 5, 'a', 'b'}, io.ErrUnexpectedEOF},
		"nothing, at all": {nil, io.EOF},
	}
	for name, c := range cases {
		_, _, err := NewFrameReader(bytes.NewReader(c.in)).Next()
		if !errors.Is(err, c.want) {
			t.Errorf("%s: Next = %v, want %v", name, err, c.want)
		}
	}
}

// FuzzFrameReader: the client reads an agent's bytes; Next must never panic or
// return a frame over the limit, and every frame it accepts writes back to the
// bytes it came from.
func FuzzFrameReader(f *testing.F) {
	var b bytes.Buffer
	_ = WriteFrame(&b, FrameStdout, []byte("a line\n"))
	_ = WriteFrame(&b, FrameError, []byte("lost"))
	f.Add(b.Bytes())
	f.Add([]byte{1, 0, 0, 0, 0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{2, 0, 0, 0, 0, 0, 0, 0})
	f.Fuzz(func(t *testing.T, in []byte) {
		r := NewFrameReader(bytes.NewReader(in))
		var out bytes.Buffer
		for {
			typ, p, err := r.Next()
			if err != nil {
				break
			}
			if len(p) > MaxFrameBytes || typ < FrameStdout || typ > FrameError {
				t.Fatalf("accepted a frame of type %d, %d bytes", typ, len(p))
			}
			if err := WriteFrame(&out, typ, p); err != nil {
				t.Fatal(err)
			}
		}
		if !bytes.HasPrefix(in, out.Bytes()) {
			t.Fatalf("frames read do not write back to their bytes")
		}
	})
}
