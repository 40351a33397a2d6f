package events

import (
	"errors"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func decodeAll(s string, sse bool) ([]string, error) {
	d := NewDecoder(strings.NewReader(s), sse)
	var out []string
	for {
		e, err := d.Next()
		if err != nil {
			return out, err
		}
		out = append(out, fmt.Sprintf("%d %s %s", e.ID, e.Type, d.Raw()))
	}
}

func TestDecoder(t *testing.T) {
	placed := `{"id":7,"time":"2030-01-02T03:04:05Z","type":"placed","node":"n1"}`
	trunc := `{"id":0,"time":"2030-01-02T03:04:05Z","type":"truncated","reason":"events were missed: x"}`
	future := `{"id":8,"time":"2030-01-02T03:04:05Z","type":"lease_expired","new_field":[1,2]}`
	for _, tc := range []struct {
		name, in string
		sse      bool
		want     []string
		err      string // "" : io.EOF
	}{
		{"ndjson", trunc + "\n\n" + placed + "\r\n" + future, false,
			[]string{"0 truncated " + trunc, "7 placed " + placed, "8 lease_expired " + future}, ""},
		{"ndjson empty", "", false, nil, ""},
		{"ndjson garbage", placed + "\nnot json\n", false, []string{"7 placed " + placed}, "line 2: not an event"},
		{"ndjson bad type", `{"id":1,"type":"Placed"}`, false, nil, `line 1: invalid event type "Placed"`},
		{"ndjson no type", `{"id":1}`, false, nil, `invalid event type ""`},
		{"ndjson array", `[1]`, false, nil, "not an event"},
		{"sse", "retry: 3000\n\n: keepalive\n\nevent: truncated\ndata: " + trunc + "\n\nid: 7\nevent: placed\ndata: " + placed + "\n\n", true,
			[]string{"0 truncated " + trunc, "7 placed " + placed}, ""},
		{"sse multi-line data and no event name", "data: {\"id\":7,\"time\":\"2030-01-02T03:04:05Z\",\ndata:\"type\":\"placed\"}\n\n", true,
			[]string{"7 placed {\"id\":7,\"time\":\"2030-01-02T03:04:05Z\",\n\"type\":\"placed\"}"}, ""},
		{"sse cut in a message", "id: 7\nevent: placed\ndata: " + placed + "\n", true, nil, "line 3: unexpected EOF"},
		{"sse bad id", "id: seven\n\n", true, nil, `id "seven" is not a number`},
		{"sse id disagrees", "id: 8\ndata: " + placed + "\n\n", true, nil, "id 8 carries data of event 7"},
		{"sse type disagrees", "event: stopped\ndata: " + placed + "\n\n", true, nil, `event "stopped" carries data of type "placed"`},
		{"too long", strings.Repeat("x", MaxLineBytes+1) + "\n", false, nil, "line 1: longer than 1048576 bytes"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := decodeAll(tc.in, tc.sse)
			if tc.err == "" && err != io.EOF || tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)) {
				t.Errorf("error %v, want %q (\"\" for io.EOF)", err, tc.err)
			}
			if tc.name == "sse cut in a message" && !errors.Is(err, io.ErrUnexpectedEOF) {
				t.Errorf("error %v is not io.ErrUnexpectedEOF", err)
			}
			if diff := cmp.Diff(tc.want, got); diff != "" {
				t.Errorf("events (-want +got):\n%s", diff)
			}
		})
	}
}
