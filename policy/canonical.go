package policy

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strconv"

	"go.yaml.in/yaml/v3"
)

type canonicalDoc struct {
	APIVersion string     `json:"apiVersion"`
	Kind       string     `json:"kind"`
	Metadata   Metadata   `json:"metadata"`
	Spec       any        `json:"spec"`
	Signature  *Signature `json:"signature,omitempty"`
}

func (in *Intent) spec() any {
	if in.Workload != nil {
		return in.Workload
	}
	return in.Policy
}

// Canonical returns the canonical encoding of a normalised intent: compact JSON with
// object keys sorted at every level, no HTML escaping, no signature. Defaults are
// written out, except those of fields added after intents were first stored
// (spec.disconnect.reconcile, spec.exclusive), which are left out so older encodings
// stay canonical.
// It is what signatures sign, what Hash hashes and what nodes store and exchange.
func Canonical(in *Intent) ([]byte, error) {
	return sortedJSON(canonicalDoc{APIVersion: in.APIVersion, Kind: in.Kind, Metadata: in.Metadata, Spec: in.spec()})
}

// Document returns the intent as a JSON request document: the canonical fields plus the
// signature, if any. Parse(Document(x)) yields x again.
func Document(in *Intent) ([]byte, error) {
	return sortedJSON(canonicalDoc{APIVersion: in.APIVersion, Kind: in.Kind, Metadata: in.Metadata, Spec: in.spec(), Signature: in.Signature})
}

func sortedJSON(v any) ([]byte, error) {
	b, err := marshalNoEscape(v)
	if err != nil {
		return nil, fmt.Errorf("encode intent: %w", err)
	}
	// Round-trip through generic maps: encoding/json writes map keys sorted.
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var g any
	if err := dec.Decode(&g); err != nil {
		return nil, fmt.Errorf("encode intent: %w", err)
	}
	return marshalNoEscape(g)
}

func marshalNoEscape(v any) ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(v); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// Hash is the lowercase hex sha256 of b (a canonical encoding).
func Hash(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// RunHash is a hash of what an instance of the workload runs with: driver, command,
// image, environment, resources, restart rule, health check and exclusivity. Two
// versions of an intent with the same RunHash run identical instances, so a change of
// replicas, regions, constraints, priority or disconnect rules, or a write of the
// same spec again, does not restart anything.
func (w *WorkloadSpec) RunHash() string {
	run := struct {
		Driver    string            `json:"driver"`
		Command   []string          `json:"command,omitempty"`
		Image     string            `json:"image,omitempty"`
		Env       map[string]string `json:"env,omitempty"`
		Resources Resources         `json:"resources"`
		Restart   Restart           `json:"restart"`
		Health    *Health           `json:"health,omitempty"`
		Exclusive bool              `json:"exclusive,omitempty"`
	}{w.Driver, w.Command, w.Image, w.Env, w.Resources, w.Restart, w.Health, w.Exclusive}
	b, err := json.Marshal(run) // map keys sorted: deterministic
	if err != nil {
		panic(fmt.Sprintf("marshal workload spec: %v", err)) // plain data; cannot fail
	}
	return Hash(b)[:16] // 64 bits: it is stored with every placement
}

// DecodeCanonical parses a canonical encoding received from a peer. It fails unless the
// bytes are exactly the canonical encoding of a valid intent.
func DecodeCanonical(b []byte) (Intent, error) {
	if len(b) > MaxIntentBytes {
		return Intent{}, fmt.Errorf("intent is %d bytes; the limit is %d", len(b), MaxIntentBytes)
	}
	ins, err := Parse(b)
	if err != nil {
		return Intent{}, err
	}
	if len(ins) != 1 || ins[0].Signature != nil {
		return Intent{}, fmt.Errorf("not a canonical encoding: want exactly one unsigned document")
	}
	c, err := Canonical(&ins[0])
	if err != nil {
		return Intent{}, err
	}
	if !bytes.Equal(c, b) {
		return Intent{}, fmt.Errorf("not a canonical encoding of the intent it holds")
	}
	return ins[0], nil
}

// IndentJSON pretty-prints a canonical encoding for people.
func IndentJSON(canonical []byte) []byte {
	var buf bytes.Buffer
	if err := json.Indent(&buf, canonical, "", "  "); err != nil {
		return canonical
	}
	buf.WriteByte('\n')
	return buf.Bytes()
}

// YAML renders a canonical encoding as YAML (keys sorted), for `?format=yaml`.
func YAML(canonical []byte) ([]byte, error) {
	dec := json.NewDecoder(bytes.NewReader(canonical))
	dec.UseNumber()
	var g any
	if err := dec.Decode(&g); err != nil {
		return nil, fmt.Errorf("render yaml: %w", err)
	}
	out, err := yaml.Marshal(numbers(g))
	if err != nil {
		return nil, fmt.Errorf("render yaml: %w", err)
	}
	return out, nil
}

func numbers(v any) any {
	switch x := v.(type) {
	case map[string]any:
		for k, e := range x {
			x[k] = numbers(e)
		}
	case []any:
		for i, e := range x {
			x[i] = numbers(e)
		}
	case json.Number:
		if i, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			return i
		}
		f, _ := strconv.ParseFloat(string(x), 64)
		return f
	}
	return v
}
