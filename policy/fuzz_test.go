package policy

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse feeds arbitrary request bodies to Parse. It must never panic, and every
// accepted intent's canonical encoding must be a fixed point (DecodeCanonical accepts it
// and re-encodes it to the same bytes), which is what peers rely on.
func FuzzParse(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join("..", "testdata", "intents", "*"))
	bad, _ := filepath.Glob(filepath.Join("..", "testdata", "intents", "bad", "*"))
	for _, p := range append(files, bad...) {
		if b, err := os.ReadFile(p); err == nil {
			f.Add(b)
		}
	}
	f.Add([]byte("---\n---\n"))
	f.Add([]byte(`[{"apiVersion":"murmur/v1","kind":"Policy","metadata":{"name":"p"},"spec":{"offload":{}}}]`))
	f.Add([]byte("a: &a [*a]\n"))
	f.Add([]byte("apiVersion: murmur/v1\nkind: Workload\nmetadata: {name: w}\nspec: {driver: exec, command: [x], disconnect: {replaceAfter: 1m, reconcile: keep_original}}\n"))
	f.Add([]byte(`{"apiVersion":"murmur/v1","kind":"Workload","metadata":{"name":"w"},"spec":{"driver":"exec","command":["x"],"disconnect":{"reconcile":"keep_replacement"}}}`))
	f.Add([]byte("apiVersion: murmur/v1\nkind: Workload\nmetadata: {name: w}\nspec: {driver: exec, command: [x], exclusive: true}\n"))
	f.Fuzz(func(t *testing.T, body []byte) {
		ins, err := Parse(body)
		if err != nil {
			return
		}
		for i := range ins {
			c, err := Canonical(&ins[i])
			if err != nil {
				t.Fatalf("Canonical: %v", err)
			}
			back, err := DecodeCanonical(c)
			if err != nil {
				t.Fatalf("DecodeCanonical(Canonical(x)) = %v\n%s", err, c)
			}
			c2, _ := Canonical(&back)
			if !bytes.Equal(c, c2) {
				t.Fatalf("canonical not stable:\n%s\n%s", c, c2)
			}
		}
	})
}

// FuzzParseVersion: ParseVersion never panics and round-trips what it accepts.
func FuzzParseVersion(f *testing.F) {
	f.Add("1732291200123.4@node-a")
	f.Add("0.0@x")
	f.Add("1.2@@")
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseVersion(s)
		if err != nil {
			return
		}
		v2, err := ParseVersion(v.String())
		if err != nil || v2 != v {
			t.Fatalf("round trip %q → %v → %v, %v", s, v, v2, err)
		}
	})
}

// FuzzSignedVersion: the version of a signature (a document's signature.version, a
// delete's Murmur-Signature header) never panics the decoder; what it accepts is in
// canonical spelling, a valid signed version, and makes a SignedMessage that is JSON.
func FuzzSignedVersion(f *testing.F) {
	f.Add("1732291200123.0@key:3f2a0b1c2d3e4f50")
	f.Add("1.4294967295@n")
	f.Add("01.0@key:ab")
	f.Add("1.0@key:a\"b")
	f.Add("")
	f.Fuzz(func(t *testing.T, s string) {
		sig := &Signature{KeyID: "k", Value: "v", Version: s}
		v, err := sig.SignedVersion()
		if err != nil {
			return
		}
		if v.String() != s || CheckSignedVersion(v) != nil {
			t.Fatalf("accepted %q as %v", s, v)
		}
		if msg := SignedMessage([]byte(`{"a":1}`), v); !json.Valid(msg) {
			t.Fatalf("SignedMessage at %q is not JSON: %s", s, msg)
		}
	})
}
