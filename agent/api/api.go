package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
)

// FieldError names one problem with one field of a request, e.g.
// {"field": "spec.replicas", "message": "must be between 0 and 10000"}.
type FieldError struct {
	Field   string `json:"field"`
	Message string `json:"message"`
}

// Error is the body of every 4xx and 5xx answer.
type Error struct {
	Error   string       `json:"error"`
	Details []FieldError `json:"details,omitempty"`
}

// WriteJSON writes v as JSON with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	_ = enc.Encode(v) // the client went away; nothing to do
}

// WriteError writes the error envelope with the given status.
func WriteError(w http.ResponseWriter, status int, msg string, details ...FieldError) {
	WriteJSON(w, status, Error{Error: msg, Details: details})
}

// MaxBodyBytes is the largest request body the agent reads (1 MiB of intents).
const MaxBodyBytes = 1 << 20

// ErrBodyTooLarge is returned by ReadBody when the body exceeds its limit.
var ErrBodyTooLarge = errors.New("request body too large")

// ReadBody reads at most limit bytes of r's body. A longer body yields ErrBodyTooLarge,
// which handlers answer with 413.
func ReadBody(r *http.Request, limit int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read request body: %w", err)
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%w: the limit is %d bytes", ErrBodyTooLarge, limit)
	}
	return b, nil
}
