package policy

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"io"
	"regexp"
	"sort"
	"strings"
	"time"
)

// Signature is a detached ed25519 signature of an intent (or of a delete) at a version
// the signer chose. KeyID names the public key (see KeyID), Value is the 64-byte
// signature in standard base64, and Version is the version the signer gave the record,
// in the Version.String form "wall.counter@node". What is signed is
// SignedMessage(content, version): the version is covered, so no node or relay can store
// the signed content under any other version, and replaying an older signed record
// cannot make it newer (docs/intents.md, "Signed intents and replay").
//
// A Signature without a Version was made by an earlier release over the content alone;
// it does not verify under this scheme and nodes that trust keys refuse it
// (ErrUnversioned).
type Signature struct {
	KeyID   string `json:"keyId" yaml:"keyId" codec:"k"`
	Value   string `json:"value" yaml:"value" codec:"v"`
	Version string `json:"version,omitempty" yaml:"version" codec:"r,omitempty"`
}

// KeyID is the hex of the first 8 bytes of sha256 of the raw 32-byte public key.
func KeyID(pub ed25519.PublicKey) string {
	s := sha256.Sum256(pub)
	return hex.EncodeToString(s[:8])
}

// SignerNode is the Node part of the versions a key signs with `murmur apply
// --sign-key`: "key:" and the key id. It keeps signed versions apart from the versions
// nodes mint (node names are DNS labels and hold no ':').
func SignerNode(keyID string) string { return "key:" + keyID }

// signerNodeRE is what the Node of a signed version may hold: 1-128 letters, digits,
// '.', '_', ':' and '-', starting and ending with a letter or digit.
var signerNodeRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._:-]{0,126}[A-Za-z0-9])?$`)

// CheckSignedVersion reports what is wrong with v as a version a signer chose: it needs
// a positive Wall and a Node of 1-128 letters, digits, '.', '_', ':' or '-'.
func CheckSignedVersion(v Version) error {
	if v.Wall <= 0 {
		return fmt.Errorf("version %s: the wall clock must be positive (Unix milliseconds)", v)
	}
	if !signerNodeRE.MatchString(v.Node) {
		return fmt.Errorf("version %s: the part after '@' must be 1-128 letters, digits, '.', '_', ':' or '-' (murmur uses key:<keyId>)", v)
	}
	return nil
}

// NextSignedVersion is the version a signer with key keyID gives its next update of a
// name: above held (the version a node holds for the name, live or deleted; zero when
// none) and, when the signer's clock is not behind, its clock now. Node is
// SignerNode(keyID).
func NextSignedVersion(held Version, now time.Time, keyID string) Version {
	return NextVersion(held, now, SignerNode(keyID))
}

// SignedMessage is what a signature signs: the content (an intent's canonical encoding,
// or TombstoneBytes(name) for a delete) together with the version the signer gave it,
// as the compact JSON
//
//	{"intent":<content>,"version":"<wall>.<counter>@<node>"}
//
// It starts with {"intent":, which no canonical encoding does, so a signature of an
// earlier release (over the canonical encoding alone) never verifies as one of these,
// nor the reverse.
func SignedMessage(content []byte, v Version) []byte {
	ver, _ := marshalNoEscape(v.String()) // a string always encodes
	b := make([]byte, 0, len(content)+len(ver)+24)
	b = append(b, `{"intent":`...)
	b = append(b, content...)
	b = append(b, `,"version":`...)
	b = append(b, ver...)
	return append(b, '}')
}

// Sign signs msg with priv. The result has no Version: use SignIntent or SignTombstone
// for what nodes accept.
func Sign(priv ed25519.PrivateKey, msg []byte) *Signature {
	pub, _ := priv.Public().(ed25519.PublicKey)
	return &Signature{KeyID: KeyID(pub), Value: base64.StdEncoding.EncodeToString(ed25519.Sign(priv, msg))}
}

// SignIntent sets in.Signature to the signature of its canonical encoding at version v.
// Nodes store the intent at exactly v.
func SignIntent(in *Intent, v Version, priv ed25519.PrivateKey) error {
	if err := CheckSignedVersion(v); err != nil {
		return fmt.Errorf("sign %s: %w", in.Name(), err)
	}
	b, err := Canonical(in)
	if err != nil {
		return err
	}
	sig := Sign(priv, SignedMessage(b, v))
	sig.Version = v.String()
	in.Signature = sig
	return nil
}

// SignTombstone signs the delete of name at version v (SignedMessage of
// TombstoneBytes(name) at v). Nodes store the tombstone at exactly v.
func SignTombstone(name string, v Version, priv ed25519.PrivateKey) (*Signature, error) {
	if err := CheckSignedVersion(v); err != nil {
		return nil, fmt.Errorf("sign the delete of %s: %w", name, err)
	}
	sig := Sign(priv, SignedMessage(TombstoneBytes(name), v))
	sig.Version = v.String()
	return sig, nil
}

// SignedVersion returns the version the signature covers. It fails with ErrUnversioned
// when there is none (a signature of an earlier release), and with an error naming the
// format when it does not parse, is not spelled as Version.String spells it, or is not
// a valid signed version (CheckSignedVersion).
func (s *Signature) SignedVersion() (Version, error) {
	if s == nil || s.Version == "" {
		return Version{}, fmt.Errorf("%w; sign it again with this release's `murmur apply --sign-key` or `murmur delete --sign-key`, which sign a version", ErrUnversioned)
	}
	v, err := ParseVersion(s.Version)
	if err != nil {
		return Version{}, err
	}
	if v.String() != s.Version {
		return Version{}, fmt.Errorf("version %q: write it as %s", s.Version, v)
	}
	if err := CheckSignedVersion(v); err != nil {
		return Version{}, err
	}
	return v, nil
}

// TrustedKeys is the set of public keys a node accepts signatures from, by KeyID.
// An empty set means signatures are not required (and not checked).
type TrustedKeys map[string]ed25519.PublicKey

// NewTrustedKeys builds the set from public keys.
func NewTrustedKeys(keys ...ed25519.PublicKey) TrustedKeys {
	t := TrustedKeys{}
	for _, k := range keys {
		t[KeyID(k)] = k
	}
	return t
}

// IDs lists the key ids, sorted.
func (t TrustedKeys) IDs() []string {
	ids := make([]string, 0, len(t))
	for id := range t {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	return ids
}

// Verify checks sig over msg against the trusted keys, whatever msg is (the building
// block of VerifyVersioned, which is what nodes use). Errors wrap ErrUnsigned,
// ErrUntrustedKey or ErrBadSignature.
func (t TrustedKeys) Verify(msg []byte, sig *Signature) error {
	if sig == nil || sig.Value == "" {
		return fmt.Errorf("%w; sign it with `murmur apply --sign-key FILE` using a key this node trusts (%s)", ErrUnsigned, strings.Join(t.IDs(), ", "))
	}
	pub, ok := t[sig.KeyID]
	if !ok {
		return fmt.Errorf("%w %q; trusted keys: %s", ErrUntrustedKey, sig.KeyID, strings.Join(t.IDs(), ", "))
	}
	raw, err := base64.StdEncoding.DecodeString(sig.Value)
	if err != nil || len(raw) != ed25519.SignatureSize || !ed25519.Verify(pub, msg, raw) {
		return fmt.Errorf("%w (key %s)", ErrBadSignature, sig.KeyID)
	}
	return nil
}

// VerifyVersioned checks that sig is a trusted signature of content at the version it
// names (SignedMessage(content, version)) and returns that version. Errors wrap
// ErrUnsigned, ErrUnversioned, ErrUntrustedKey or ErrBadSignature, or name a malformed
// version.
func (t TrustedKeys) VerifyVersioned(content []byte, sig *Signature) (Version, error) {
	if sig == nil || sig.Value == "" {
		return Version{}, t.Verify(content, sig)
	}
	v, err := sig.SignedVersion()
	if err != nil {
		return Version{}, err
	}
	if err := t.Verify(SignedMessage(content, v), sig); err != nil {
		return Version{}, err
	}
	return v, nil
}

// GenerateSigningKey makes an ed25519 key pair from the randomness source r
// (crypto/rand.Reader in production).
func GenerateSigningKey(r io.Reader) (ed25519.PublicKey, ed25519.PrivateKey, error) {
	pub, priv, err := ed25519.GenerateKey(r)
	if err != nil {
		return nil, nil, fmt.Errorf("generate ed25519 key: %w", err)
	}
	return pub, priv, nil
}

// MarshalPrivateKey encodes priv as a PEM "PRIVATE KEY" block (PKCS#8), the format
// `murmur keygen --signing` writes.
func MarshalPrivateKey(priv ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, fmt.Errorf("encode private key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// MarshalPublicKey encodes pub as a PEM "PUBLIC KEY" block (PKIX).
func MarshalPublicKey(pub ed25519.PublicKey) ([]byte, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return nil, fmt.Errorf("encode public key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), nil
}

// ParsePrivateKey reads a signing key: PEM "PRIVATE KEY" (PKCS#8 ed25519), or standard
// base64 of the 32-byte seed or the 64-byte private key.
func ParsePrivateKey(data []byte) (ed25519.PrivateKey, error) {
	if blk, _ := pem.Decode(data); blk != nil {
		if blk.Type != "PRIVATE KEY" {
			return nil, fmt.Errorf("private key: PEM block is %q; want \"PRIVATE KEY\" (from murmur keygen --signing)", blk.Type)
		}
		k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("private key: %w", err)
		}
		priv, ok := k.(ed25519.PrivateKey)
		if !ok {
			return nil, fmt.Errorf("private key: %T is not an ed25519 key", k)
		}
		return priv, nil
	}
	raw, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(data)))
	if err != nil {
		return nil, fmt.Errorf("private key: neither PEM nor base64: %w", err)
	}
	switch len(raw) {
	case ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(raw), nil
	case ed25519.PrivateKeySize:
		return ed25519.PrivateKey(raw), nil
	}
	return nil, fmt.Errorf("private key: base64 decodes to %d bytes; want 32 (seed) or 64", len(raw))
}

// ParsePublicKey reads a trusted key: PEM "PUBLIC KEY" (PKIX ed25519) or standard
// base64 of the raw 32-byte key.
func ParsePublicKey(data []byte) (ed25519.PublicKey, error) {
	if blk, _ := pem.Decode(data); blk != nil {
		if blk.Type != "PUBLIC KEY" {
			return nil, fmt.Errorf("public key: PEM block is %q; want \"PUBLIC KEY\" (the .pub file of murmur keygen --signing)", blk.Type)
		}
		k, err := x509.ParsePKIXPublicKey(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("public key: %w", err)
		}
		pub, ok := k.(ed25519.PublicKey)
		if !ok {
			return nil, fmt.Errorf("public key: %T is not an ed25519 key", k)
		}
		return pub, nil
	}
	raw, err := base64.StdEncoding.DecodeString(string(bytes.TrimSpace(data)))
	if err != nil {
		return nil, fmt.Errorf("public key: neither PEM nor base64: %w", err)
	}
	if len(raw) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("public key: base64 decodes to %d bytes; want 32", len(raw))
	}
	return ed25519.PublicKey(raw), nil
}
