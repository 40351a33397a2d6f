package intents

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/murmur-edge/murmur/agent/api"
	"github.com/murmur-edge/murmur/policy"
)

// SignatureHeader carries a DELETE's signature: "<keyId>:<base64 signature>:<version>",
// the signature of the delete at that version (policy.SignTombstone). The version may
// hold ':' (key:<keyId>); the key id and base64 never do. The two-part form of earlier
// releases ("<keyId>:<base64 signature>", no version) is read, and refused by nodes
// that trust keys.
const SignatureHeader = "Murmur-Signature"

// Wait limits for ?wait=fleet.
const (
	DefaultWaitTimeout = 30 * time.Second
	MaxWaitTimeout     = 5 * time.Minute
)

// Register adds the intent routes to mux: POST /v1/intents, GET /v1/intents,
// GET /v1/intents/{name}, DELETE /v1/intents/{name}. Authentication of the write
// routes is the caller's (a middleware around mux).
func (s *Service) Register(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/intents", s.handleApply)
	mux.HandleFunc("GET /v1/intents", s.handleList)
	mux.HandleFunc("GET /v1/intents/{name}", s.handleGet)
	mux.HandleFunc("DELETE /v1/intents/{name}", s.handleDelete)
}

type applyItem struct {
	Name    string `json:"name"`
	Kind    string `json:"kind"`
	Version string `json:"version"`
	Result  string `json:"result"`
}

type applyResponse struct {
	Intents []applyItem `json:"intents"`
}

type listItem struct {
	Name    string `json:"name"`
	Kind    string `json:"kind"`
	Version string `json:"version"`
	Hash    string `json:"hash"`
	Origin  string `json:"origin"`
	Signed  string `json:"signedBy,omitempty"`
	Deleted bool   `json:"deleted,omitempty"`
}

type getResponse struct {
	listItem
	Intent json.RawMessage `json:"intent"`
}

func writeErr(w http.ResponseWriter, err error) {
	var re *RequestError
	if errors.As(err, &re) {
		details := make([]api.FieldError, len(re.Problems))
		for i, p := range re.Problems {
			details[i] = api.FieldError{Field: p.Field, Message: p.Message}
		}
		api.WriteError(w, re.Status, re.Message, details...)
		return
	}
	api.WriteError(w, http.StatusInternalServerError, err.Error())
}

// waitParams reads ?wait=fleet&timeout=30s.
func waitParams(r *http.Request) (bool, time.Duration, error) {
	q := r.URL.Query()
	wait := false
	switch q.Get("wait") {
	case "":
	case "fleet":
		wait = true
	default:
		return false, 0, reject(http.StatusBadRequest, "invalid query", policy.Problem{Field: "wait", Message: fmt.Sprintf("unknown value %q; the only value is fleet", q.Get("wait"))})
	}
	timeout := DefaultWaitTimeout
	if t := q.Get("timeout"); t != "" {
		d, err := time.ParseDuration(t)
		if err != nil || d <= 0 || d > MaxWaitTimeout {
			return false, 0, reject(http.StatusBadRequest, "invalid query", policy.Problem{Field: "timeout", Message: fmt.Sprintf("%q: want a duration between 1ms and %s, e.g. 30s", t, MaxWaitTimeout)})
		}
		timeout = d
	}
	return wait, timeout, nil
}

func (s *Service) handleApply(w http.ResponseWriter, r *http.Request) {
	wait, timeout, err := waitParams(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	body, err := api.ReadBody(r, api.MaxBodyBytes)
	if err != nil {
		if errors.Is(err, api.ErrBodyTooLarge) {
			s.m.rejected.WithLabelValues("too_large").Inc()
			api.WriteError(w, http.StatusRequestEntityTooLarge, err.Error()+"; split the request or shrink the intent")
			return
		}
		api.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	res, err := s.Apply(body)
	if err != nil {
		writeErr(w, err)
		return
	}
	s.respond(w, r, res, wait, timeout)
}

func (s *Service) respond(w http.ResponseWriter, r *http.Request, res []Result, wait bool, timeout time.Duration) {
	out := applyResponse{Intents: make([]applyItem, len(res))}
	for i, x := range res {
		out.Intents[i] = applyItem{Name: x.Name, Kind: x.Kind, Version: x.Version.String(), Result: x.Result}
	}
	if wait {
		// Unchanged intents were acknowledged to whoever accepted them; announce them
		// again so the nodes that have them acknowledge to us.
		var again []policy.Record
		for _, x := range res {
			if rec, ok := s.Get(x.Name); ok && x.Result == "unchanged" {
				again = append(again, rec)
			}
		}
		s.announceAll(again)
		ctx, cancel := context.WithTimeout(r.Context(), timeout)
		missing := s.WaitFleet(ctx, res)
		cancel()
		if len(missing) > 0 {
			details := make([]api.FieldError, len(missing))
			for i, n := range missing {
				details[i] = api.FieldError{Field: "node " + n, Message: "has not stored the new version"}
			}
			api.WriteError(w, http.StatusGatewayTimeout,
				fmt.Sprintf("stored on this node, but %d alive node(s) had not stored it after %s: %s", len(missing), timeout, strings.Join(missing, ", ")), details...)
			return
		}
	}
	api.WriteJSON(w, http.StatusOK, out)
}

func item(rec policy.Record) listItem {
	it := listItem{Name: rec.Name, Kind: rec.Kind, Version: rec.Version.String(), Hash: rec.Hash, Origin: rec.Origin, Deleted: rec.Deleted}
	if rec.Signature != nil {
		it.Signed = rec.Signature.KeyID
	}
	return it
}

func (s *Service) handleList(w http.ResponseWriter, r *http.Request) {
	withDeleted := r.URL.Query().Get("deleted") == "true"
	out := struct {
		Intents []listItem `json:"intents"`
	}{Intents: []listItem{}}
	for _, rec := range s.Records() {
		if rec.Deleted && !withDeleted {
			continue
		}
		out.Intents = append(out.Intents, item(rec))
	}
	api.WriteJSON(w, http.StatusOK, out)
}

func (s *Service) handleGet(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	rec, ok := s.Get(name)
	if !ok {
		api.WriteError(w, http.StatusNotFound, fmt.Sprintf("intent %q not found", name))
		return
	}
	if rec.Deleted {
		api.WriteError(w, http.StatusNotFound, fmt.Sprintf("intent %q was deleted (version %s)", name, rec.Version))
		return
	}
	switch f := r.URL.Query().Get("format"); f {
	case "", "json":
		api.WriteJSON(w, http.StatusOK, getResponse{listItem: item(rec), Intent: rec.Body})
	case "yaml":
		y, err := policy.YAML(rec.Body)
		if err != nil {
			api.WriteError(w, http.StatusInternalServerError, err.Error())
			return
		}
		w.Header().Set("Content-Type", "application/yaml")
		fmt.Fprintf(w, "# version %s, origin %s, hash %s\n", rec.Version, rec.Origin, rec.Hash)
		w.Write(y)
	default:
		api.WriteError(w, http.StatusBadRequest, "invalid query", api.FieldError{Field: "format", Message: fmt.Sprintf("unknown format %q; want json or yaml", f)})
	}
}

func (s *Service) handleDelete(w http.ResponseWriter, r *http.Request) {
	wait, timeout, err := waitParams(r)
	if err != nil {
		writeErr(w, err)
		return
	}
	sig, err := parseSignatureHeader(r.Header.Get(SignatureHeader))
	if err != nil {
		api.WriteError(w, http.StatusBadRequest, "invalid signature header", api.FieldError{Field: SignatureHeader, Message: err.Error()})
		return
	}
	res, err := s.Delete(r.PathValue("name"), sig)
	if err != nil {
		writeErr(w, err)
		return
	}
	s.respond(w, r, []Result{res}, wait, timeout)
}

// parseSignatureHeader reads a SignatureHeader value: nil for an empty one. The
// version, when present, is checked by Delete (policy.Signature.SignedVersion).
func parseSignatureHeader(h string) (*policy.Signature, error) {
	if h == "" {
		return nil, nil
	}
	parts := strings.SplitN(h, ":", 3)
	if len(parts) < 2 || parts[0] == "" || parts[1] == "" {
		return nil, errors.New("want <keyId>:<base64 signature>:<version>, as murmur delete --sign-key sends")
	}
	sig := &policy.Signature{KeyID: parts[0], Value: parts[1]}
	if len(parts) == 3 {
		sig.Version = parts[2]
	}
	return sig, nil
}
