package secure

import (
	"crypto/x509"
	"errors"
	"fmt"
	"strings"
)

// Identity is who a certificate speaks for: a node of a region.
type Identity struct {
	Node   string
	Region string
}

// uriPrefix starts the URI SAN that names a node: murmur:node:<region>:<node>.
const uriPrefix = "murmur:node:"

// URI is the certificate SAN that carries the identity.
func (id Identity) URI() string { return uriPrefix + id.Region + ":" + id.Node }

func (id Identity) String() string { return id.Node + " (region " + id.Region + ")" }

// Validate checks that both names fit in a URI SAN unambiguously. The agent's own
// naming rules (agent/config.go) are stricter; a certificate that passes here and not
// there simply names no node the fleet has.
func (id Identity) Validate() error {
	if !plainName(id.Node, 128) {
		return fmt.Errorf("node name %q: use letters, digits, '.', '_' and '-', at most 128 characters", trunc(id.Node))
	}
	if !plainName(id.Region, 63) {
		return fmt.Errorf("region %q: use letters, digits, '.', '_' and '-', at most 63 characters", trunc(id.Region))
	}
	return nil
}

func plainName(s string, max int) bool {
	if s == "" || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '_' || c == '-'
		if !ok {
			return false
		}
	}
	return true
}

// ParseIdentityURI reads a murmur:node:<region>:<node> URI (fuzzed by FuzzParseIdentityURI).
func ParseIdentityURI(s string) (Identity, error) {
	rest, ok := strings.CutPrefix(s, uriPrefix)
	if !ok {
		return Identity{}, fmt.Errorf("uri %q is not a murmur node identity (want %sREGION:NODE)", trunc(s), uriPrefix)
	}
	region, node, ok := strings.Cut(rest, ":")
	if !ok {
		return Identity{}, fmt.Errorf("uri %q has no node name (want %sREGION:NODE)", trunc(s), uriPrefix)
	}
	id := Identity{Node: node, Region: region}
	if err := id.Validate(); err != nil {
		return Identity{}, fmt.Errorf("uri %q: %w", trunc(s), err)
	}
	return id, nil
}

// ErrNoIdentity is returned by IdentityFromCert for a certificate that names no node.
var ErrNoIdentity = errors.New("certificate names no murmur node (make node certificates with 'murmur tls cert create')")

// IdentityFromCert reads the identity from a certificate's URI SANs: exactly one
// must be a murmur node URI.
func IdentityFromCert(c *x509.Certificate) (Identity, error) {
	var found []Identity
	for _, u := range c.URIs {
		if u == nil || u.Scheme != "murmur" {
			continue
		}
		id, err := ParseIdentityURI(u.String())
		if err != nil {
			return Identity{}, err
		}
		found = append(found, id)
	}
	switch len(found) {
	case 0:
		return Identity{}, ErrNoIdentity
	case 1:
		return found[0], nil
	default:
		return Identity{}, fmt.Errorf("certificate names %d murmur nodes; a node certificate names exactly one", len(found))
	}
}

func trunc(s string) string {
	if len(s) > 80 {
		return s[:80] + "..."
	}
	return s
}
