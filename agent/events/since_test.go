package events

import (
	"strings"
	"testing"
	"time"
)

func TestParseSince(t *testing.T) {
	// Ring of 4 with events 1..6 at t0+0s..t0+5s: 3..6 (t0+2s..t0+5s) are kept.
	r := NewRing(4, time.Time{}, nil)
	fill(r, 6)
	now := t0.Add(10 * time.Second)
	for _, tc := range []struct {
		in        string
		want      uint64
		truncated bool // Since(want) reports missed events
	}{
		{"0", 0, true},
		{"4", 4, false},
		{"18446744073709551615", 18446744073709551615, true}, // not from this run
		{t0.Add(3 * time.Second).Format(time.RFC3339), 3, false},
		{t0.Add(2500 * time.Millisecond).Format(time.RFC3339Nano), 3, false},
		{t0.Add(3 * time.Second).In(time.FixedZone("x", 3600)).Format(time.RFC3339), 3, false},
		{t0.Add(2 * time.Second).Format(time.RFC3339), 2, false}, // the oldest kept: nothing missed
		{t0.Add(time.Second).Format(time.RFC3339), 1, true},      // event 2 (t0+1s) is gone
		{t0.Add(-time.Hour).Format(time.RFC3339), 1, true},       // so is event 1
		{t0.Add(time.Minute).Format(time.RFC3339), 6, false},     // after every event: only new ones
		{"5s", 5, false},     // t0+5s onwards
		{"7500ms", 3, false}, // t0+2.5s onwards
		{"1h", 1, true},
		{"0s", 6, false},
	} {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseSince(tc.in, now, r)
			if err != nil {
				t.Fatalf("ParseSince(%q): %v", tc.in, err)
			}
			if got != tc.want {
				t.Errorf("ParseSince(%q) = %d, want %d", tc.in, got, tc.want)
			}
			if _, truncated := r.Since(got, Filter{}, 0); truncated != tc.truncated {
				t.Errorf("Since(ParseSince(%q)) truncated %v, want %v", tc.in, truncated, tc.truncated)
			}
		})
	}
}

func TestParseSinceErrors(t *testing.T) {
	r := NewRing(4, time.Time{}, nil)
	for _, tc := range []struct{ in, want string }{
		{"", "since is empty"},
		{"yesterday", `since "yesterday" is not an event id, a time or a duration`},
		{"5", ""}, // a bare number is an id, not a duration
		{"-5m", "negative duration"},
		{"18446744073709551616", "out of range"},
		{"2025-01-02", "is not an RFC 3339 time"},
		{"2025-01-02T25:00:00Z", "is not an RFC 3339 time"},
		{"2025-01-02 15:04:05", "is not an RFC 3339 time"},
		{strings.Repeat("9", 65), "65 bytes long"},
	} {
		_, err := ParseSince(tc.in, t0, r)
		if tc.want == "" {
			if err != nil {
				t.Errorf("ParseSince(%q): %v", tc.in, err)
			}
			continue
		}
		if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), "since") {
			t.Errorf("ParseSince(%q) error %v, want one naming since and containing %q", tc.in, err, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), "e.g.") {
			t.Errorf("ParseSince(%q) error %q does not show the accepted forms", tc.in, err)
		}
	}
}
