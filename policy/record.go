package policy

import (
	"errors"
	"fmt"
	"time"
)

// Record is an intent as a node stores and disseminates it: the canonical body plus
// its version. The accepting node mints the version (NextVersion), except for a signed
// record, whose version is the one its signature covers (Signature.Version): then the
// fleet's "highest version wins" order is the signer's order. A deleted intent is a
// tombstone: Deleted set, no Body, Hash of TombstoneBytes(Name); it is kept for a TTL so
// that a node which missed the delete cannot bring the intent back.
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

// TombstoneBytes is what identifies the delete of name: its Hash is the tombstone's
// Hash, and a signed delete signs SignedMessage(TombstoneBytes(name), version).
func TombstoneBytes(name string) []byte {
	return []byte(`{"apiVersion":"` + APIVersion + `","deleted":true,"metadata":{"name":"` + name + `"}}`)
}

// Content is what the record holds: its body, or TombstoneBytes(Name) for a tombstone.
func (r *Record) Content() []byte {
	if r.Deleted {
		return TombstoneBytes(r.Name)
	}
	return r.Body
}

// SignedBytes is what the record's signature must sign: its content at its version,
// SignedMessage(r.Content(), r.Version).
func (r *Record) SignedBytes() []byte {
	return SignedMessage(r.Content(), r.Version)
}

// Errors returned by CheckRecord and Verify, for metrics and callers.
var (
	ErrMalformed    = errors.New("malformed intent record")
	ErrUnsigned     = errors.New("intent is not signed")
	ErrUntrustedKey = errors.New("intent is signed by an untrusted key")
	ErrBadSignature = errors.New("intent signature does not verify")
	ErrUnversioned  = errors.New("intent signature covers no version (made by an earlier murmur, it could be replayed)")
	ErrFuture       = errors.New("intent version is too far in the future")
)

// CheckRecord verifies a record received from a peer: a valid name, a body that is the
// exact canonical encoding of a valid intent of that name and kind, the hash, a
// version not too far ahead of now (so no peer can pin a name with a far-future
// version), and, when trusted is not empty, a signature by a trusted key that covers
// the record's version.
//
// The bound ahead of now is maxSkew, or maxSignedSkew on a node that trusts keys: there
// every record must be signed, its version was chosen by the signer and bounded by the
// node that accepted it from the API (docs/intents.md), and only a trusted key can make
// one. A record whose signature names a version other than its own is refused on every
// node (ErrBadSignature): a relay cannot move a signed record to another version. For a
// live record CheckRecord returns the parsed intent.
func CheckRecord(r *Record, trusted TrustedKeys, now time.Time, maxSkew, maxSignedSkew time.Duration) (*Intent, error) {
	if !ValidName(r.Name) {
		return nil, fmt.Errorf("%w: name %q is not a DNS label", ErrMalformed, r.Name)
	}
	if r.Version.Node == "" || r.Version.Wall <= 0 {
		return nil, fmt.Errorf("%w: %s has no valid version", ErrMalformed, r.Name)
	}
	skew := maxSkew
	if len(trusted) > 0 {
		skew = maxSignedSkew
	}
	if r.Version.Wall > now.Add(skew).UnixMilli() {
		return nil, fmt.Errorf("%w: %s@%s is more than %s ahead of this node's clock", ErrFuture, r.Name, r.Version, skew)
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
	if sig := r.Signature; sig != nil && sig.Version != "" && sig.Version != r.Version.String() {
		return nil, fmt.Errorf("%s@%s: %w: it is signed for version %s", r.Name, r.Version, ErrBadSignature, sig.Version)
	}
	if len(trusted) > 0 {
		if _, err := trusted.VerifyVersioned(r.Content(), r.Signature); err != nil {
			return nil, fmt.Errorf("%s@%s: %w", r.Name, r.Version, err)
		}
	}
	if in != nil {
		in.Signature = r.Signature
	}
	return in, nil
}
