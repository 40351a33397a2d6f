package events

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// sinceForms is the help appended to every error of ParseSince.
const sinceForms = "give an event id (e.g. 1735830245123000042), an RFC 3339 time (e.g. 2025-01-02T15:04:05Z) or a duration back from now (e.g. 90s, 5m, 1h30m)"

// maxSinceLen bounds the input of ParseSince: the longest valid form is an RFC 3339
// time with nanoseconds and a zone offset (35 bytes).
const maxSinceLen = 64

// ParseSince turns the since parameter of GET /v1/events into the ID after which
// events are wanted:
//
//   - a decimal number is an event ID: events after it;
//   - an RFC 3339 time: events at or after it (found in r, assuming event times grow
//     with IDs);
//   - a Go duration with a unit, like 5m: events of the last 5 minutes before now.
//
// r is needed for the last two forms; with a nil r they return 0 (everything).
func ParseSince(s string, now time.Time, r *Ring) (uint64, error) {
	if s == "" {
		return 0, errors.New("since is empty: " + sinceForms)
	}
	if len(s) > maxSinceLen {
		return 0, fmt.Errorf("since is %d bytes long: %s", len(s), sinceForms)
	}
	if isDigits(s) {
		id, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("since %q: event id out of range: %s", s, sinceForms)
		}
		return id, nil
	}
	var t time.Time
	if strings.Contains(s, "T") || strings.Count(s, "-") >= 2 {
		var err error
		if t, err = time.Parse(time.RFC3339Nano, s); err != nil {
			return 0, fmt.Errorf("since %q is not an RFC 3339 time (%v): %s", s, err, sinceForms)
		}
	} else {
		d, err := time.ParseDuration(s)
		if err != nil {
			return 0, fmt.Errorf("since %q is not an event id, a time or a duration: %s", s, sinceForms)
		}
		if d < 0 {
			return 0, fmt.Errorf("since %q is a negative duration: give how far back from now, e.g. 5m", s)
		}
		t = now.Add(-d)
	}
	if r == nil {
		return 0, nil
	}
	return r.idBefore(t), nil
}

func isDigits(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return s != ""
}
