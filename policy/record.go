package policy

import (
	"errors"
	"fmt"
	"time"
)

// Record is an intent as a node stores and disseminates it: the canonical body plus
// the version the accepting node gave it. A deleted intent is a tombstone: Deleted set,
// no Body, Hash of TombstoneBytes(Name); it is kept for a TTL so that a node which
// missed the delete cannot bring the intent back.
type Record struct {
	Name      string     `json:"name" codec:"n"`
	Kind      string     `json:"kind" codec:"k"`
	Version   Version    `json:"version" codec:"v"`
	Hash      string     `json:"hash" codec:"h"`
	Origin    string     `json:"origin" codec:"o"` // node that accepted this version
	Deleted   bool       `json:"deleted,omitempty" codec:"d"`
	Body      []byte     `json:"body,omitempty" codec:"b"` // canonical encoding
	Signature *Signature `json:"signature,omitempty" codec:"s"`
}

// TombstoneBytes is what a delete of name signs and hashes.
func TombstoneBytes(name string) []byte {
	return []byte(`{"apiVersion":"` + APIVersion + `","deleted":true,"metadata":{"name":"` + name + `"}}`)
}

// SignedBytes is what the record's signature must sign.
func (r *Record) SignedBytes() []byte {
	if r.Deleted {
		return TombstoneBytes(r.Name)
	}
	return r.Body
}

// Errors returned by CheckRecord and Verify, for metrics and callers.
var (
	ErrMalformed    = errors.New("malformed intent record")
	ErrUnsigned     = errors.New("intent is not signed")
	ErrUntrustedKey = errors.New("intent is signed by an untrusted key")
	ErrBadSignature = errors.New("intent signature does not verify")
	ErrFuture       = errors.New("intent version is too far in the future")
)

// CheckRecord verifies a record received from a peer: a valid name, a body that is the
// exact canonical encoding of a valid intent of that name and kind, the hash, a
// version not more than maxSkew ahead of now (so no peer can pin a name forever with a
// far-future version), and, when trusted is not empty, a signature by a trusted key.
// For a live record it returns the parsed intent.
func CheckRecord(r *Record, trusted TrustedKeys, now time.Time, maxSkew time.Duration) (*Intent, error) {
	if !ValidName(r.Name) {
		return nil, fmt.Errorf("%w: name %q is not a DNS label", ErrMalformed, r.Name)
	}
	if r.Version.Node == "" || r.Version.Wall <= 0 {
		return nil, fmt.Errorf("%w: %s has no valid version", ErrMalformed, r.Name)
	}
	if r.Version.Wall > now.Add(maxSkew).UnixMilli() {
		return nil, fmt.Errorf("%w: %s@%s is more than %s ahead of this node's clock", ErrFuture, r.Name, r.Version, maxSkew)
	}
	var in *Intent
	if r.Deleted {
		if len(r.Body) != 0 || r.Hash != Hash(TombstoneBytes(r.Name)) {
			return nil, fmt.Errorf("%w: tombstone %s has a body or a wrong hash", ErrMalformed, r.Name)
		}
	} else {
		if Hash(r.Body) != r.Hash {
			return nil, fmt.Errorf("%w: %s: body does not match its hash", ErrMalformed, r.Name)
		}
		got, err := DecodeCanonical(r.Body)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %v", ErrMalformed, r.Name, err)
		}
		if got.Name() != r.Name || got.Kind != r.Kind {
			return nil, fmt.Errorf("%w: record %s/%s holds %s/%s", ErrMalformed, r.Kind, r.Name, got.Kind, got.Name())
		}
		in = &got
	}
	if len(trusted) > 0 {
		if err := trusted.Verify(r.SignedBytes(), r.Signature); err != nil {
			return nil, fmt.Errorf("%s@%s: %w", r.Name, r.Version, err)
		}
	}
	if in != nil {
		in.Signature = r.Signature
	}
	return in, nil
}
