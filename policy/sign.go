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
	"sort"
	"strings"
)

// Signature is a detached ed25519 signature over an intent's canonical encoding (or a
// tombstone's TombstoneBytes). KeyID names the public key (see KeyID), Value is the
// 64-byte signature in standard base64.
type Signature struct {
	KeyID string `json:"keyId" yaml:"keyId" codec:"k"`
	Value string `json:"value" yaml:"value" codec:"v"`
}

// KeyID is the hex of the first 8 bytes of sha256 of the raw 32-byte public key.
func KeyID(pub ed25519.PublicKey) string {
	s := sha256.Sum256(pub)
	return hex.EncodeToString(s[:8])
}

// Sign signs msg with priv.
func Sign(priv ed25519.PrivateKey, msg []byte) *Signature {
	pub, _ := priv.Public().(ed25519.PublicKey)
	return &Signature{KeyID: KeyID(pub), Value: base64.StdEncoding.EncodeToString(ed25519.Sign(priv, msg))}
}

// SignIntent sets in.Signature to the signature of its canonical encoding.
func SignIntent(in *Intent, priv ed25519.PrivateKey) error {
	b, err := Canonical(in)
	if err != nil {
		return err
	}
	in.Signature = Sign(priv, b)
	return nil
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

// Verify checks sig over msg against the trusted keys. Errors wrap ErrUnsigned,
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
