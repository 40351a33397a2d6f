package events

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
)

// MaxLineBytes bounds one line of a stream a Decoder reads.
const MaxLineBytes = 1 << 20

// Decoder reads a GET /v1/events stream, NDJSON or Server-Sent Events, as Server
// writes it. It skips keepalives and the SSE retry field. It is not safe for
// concurrent use.
type Decoder struct {
	sc   *bufio.Scanner
	sse  bool
	line int
	raw  []byte
}

// NewDecoder reads events from r; sse selects the Server-Sent Events format,
// otherwise NDJSON.
func NewDecoder(r io.Reader, sse bool) *Decoder {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 4096), MaxLineBytes)
	return &Decoder{sc: sc, sse: sse}
}

// Next returns the next event, a TypeTruncated marker included. It returns io.EOF
// at the end of the stream, io.ErrUnexpectedEOF when it ends inside an SSE message,
// and an error naming the line for anything that is not an event.
func (d *Decoder) Next() (Event, error) {
	if d.sse {
		return d.nextSSE()
	}
	for d.sc.Scan() {
		d.line++
		b := bytes.TrimSpace(d.sc.Bytes())
		if len(b) == 0 {
			continue // keepalive
		}
		return d.decode(b, "", 0)
	}
	return Event{}, d.err()
}

// Raw is the JSON of the event Next returned last. It is valid until the next call.
func (d *Decoder) Raw() []byte { return d.raw }

func (d *Decoder) nextSSE() (Event, error) {
	var data []byte
	var typ string
	var id uint64
	var hasData, pending bool
	for d.sc.Scan() {
		d.line++
		b := d.sc.Bytes()
		if len(b) == 0 { // dispatch
			if hasData {
				return d.decode(data, typ, id)
			}
			data, typ, id, pending = data[:0], "", 0, false
			continue
		}
		pending = true
		if b[0] == ':' {
			continue // comment: keepalive
		}
		field, value, _ := bytes.Cut(b, []byte(":"))
		value = bytes.TrimPrefix(value, []byte(" "))
		switch string(field) {
		case "data":
			if hasData {
				data = append(data, '\n')
			}
			if len(data)+len(value) > MaxLineBytes {
				return Event{}, fmt.Errorf("event stream line %d: a message of more than %d bytes", d.line, MaxLineBytes)
			}
			data, hasData = append(data, value...), true
		case "event":
			typ = string(value)
		case "id":
			n, err := strconv.ParseUint(string(value), 10, 64)
			if err != nil {
				return Event{}, fmt.Errorf("event stream line %d: id %q is not a number", d.line, value)
			}
			id = n
		case "retry":
		default: // unknown fields are ignored, as EventSource does
		}
	}
	if err := d.err(); err != io.EOF || !pending {
		return Event{}, err
	}
	return Event{}, fmt.Errorf("event stream line %d: %w", d.line, io.ErrUnexpectedEOF)
}

// decode parses one event's JSON; typ and id come from the SSE fields, if any, and
// must agree with it.
func (d *Decoder) decode(b []byte, typ string, id uint64) (Event, error) {
	var e Event
	if err := json.Unmarshal(b, &e); err != nil {
		return Event{}, fmt.Errorf("event stream line %d: not an event: %w", d.line, err)
	}
	if !ValidType(e.Type) {
		return Event{}, fmt.Errorf("event stream line %d: invalid event type %q", d.line, e.Type)
	}
	if typ != "" && typ != e.Type {
		return Event{}, fmt.Errorf("event stream line %d: event %q carries data of type %q", d.line, typ, e.Type)
	}
	if id != 0 && id != e.ID {
		return Event{}, fmt.Errorf("event stream line %d: id %d carries data of event %d", d.line, id, e.ID)
	}
	d.raw = b
	return e, nil
}

func (d *Decoder) err() error {
	if err := d.sc.Err(); err != nil {
		if errors.Is(err, bufio.ErrTooLong) {
			return fmt.Errorf("event stream line %d: longer than %d bytes", d.line+1, MaxLineBytes)
		}
		return err
	}
	return io.EOF
}
