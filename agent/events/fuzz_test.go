package events

import (
	"bytes"
	"errors"
	"io"
	"strconv"
	"testing"
	"time"
)

// FuzzParseSince: ParseSince never panics, an accepted id round-trips, and an
// answer for a time or duration is an id of the ring (or its base).
func FuzzParseSince(f *testing.F) {
	for _, s := range []string{"", "0", "42", "18446744073709551615", "18446744073709551616", "5m", "1h30m", "-5m",
		"2030-01-02T03:04:06Z", "2030-01-02T03:04:06.5+01:00", "2025-13-01T00:00:00Z", "1e3", "5", "0x10", "T", "--"} {
		f.Add(s)
	}
	r := NewRing(4, time.Time{}, nil)
	fill(r, 6)
	f.Fuzz(func(t *testing.T, s string) {
		id, err := ParseSince(s, t0.Add(time.Minute), r)
		if err != nil {
			if id != 0 {
				t.Errorf("ParseSince(%q) = %d with error %v", s, id, err)
			}
			return
		}
		if isDigits(s) {
			if back, _ := strconv.ParseUint(s, 10, 64); back != id {
				t.Errorf("ParseSince(%q) = %d", s, id)
			}
			return
		}
		if id > r.LastID() {
			t.Errorf("ParseSince(%q) = %d, above the ring's last id %d", s, id, r.LastID())
		}
	})
}

// FuzzDecoder: the client-side stream parser never panics or loops, in both formats,
// and every event it returns has a valid type and its raw JSON.
func FuzzDecoder(f *testing.F) {
	f.Add([]byte(`{"id":1,"time":"2030-01-02T03:04:05Z","type":"placed","node":"n1"}`+"\n\n"), false)
	f.Add([]byte("retry: 3000\n\nid: 7\nevent: placed\ndata: {\"id\":7,\"time\":\"2030-01-02T03:04:05Z\",\"type\":\"placed\"}\n\n: keepalive\n\n"), true)
	f.Add([]byte("event: truncated\ndata: {\"id\":0,\"type\":\"truncated\",\"time\":\"2030-01-02T03:04:05Z\"}\n\n"), true)
	f.Add([]byte("data: {\"id\":1,\ndata: \"type\":\"x\"}\n\n"), true)
	f.Add([]byte("id: x\n\n"), true)
	f.Add([]byte("{\"type\":\"Bad\"}\n"), false)
	f.Fuzz(func(t *testing.T, b []byte, sse bool) {
		d := NewDecoder(bytes.NewReader(b), sse)
		for range len(b) + 1 { // every event consumes at least one byte
			e, err := d.Next()
			if err != nil {
				if errors.Is(err, io.EOF) && err != io.EOF {
					t.Errorf("wrapped io.EOF: %v", err)
				}
				return
			}
			if !ValidType(e.Type) {
				t.Errorf("event with invalid type %q", e.Type)
			}
			if len(d.Raw()) == 0 {
				t.Error("event without raw JSON")
			}
		}
		t.Errorf("decoder returned more events than the input has bytes")
	})
}
