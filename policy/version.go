package policy

import (
	"cmp"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Version totally orders the updates to one intent name across the fleet. It is a
// hybrid logical clock stamp — Wall (Unix milliseconds of the accepting node's clock)
// and Counter (breaks ties within one millisecond and absorbs clock skew) — plus the
// name of the accepting node, which breaks the remaining ties. Higher wins everywhere.
// A signed record carries the version its signer chose instead (NextSignedVersion:
// the signer's clock, above the version held for the name, Node "key:<keyId>"), and
// its signature covers it. The zero Version is lower than every version NextVersion
// returns.
type Version struct {
	Wall    int64  `json:"wall" codec:"w"`
	Counter uint32 `json:"counter" codec:"c"`
	Node    string `json:"node" codec:"n"`
}

// IsZero reports whether v is the zero Version (nothing stored).
func (v Version) IsZero() bool { return v == Version{} }

// Compare returns -1, 0 or +1 as a is lower than, equal to or higher than b, ordering
// by Wall, then Counter, then Node (byte-wise).
func Compare(a, b Version) int {
	if c := cmp.Compare(a.Wall, b.Wall); c != 0 {
		return c
	}
	if c := cmp.Compare(a.Counter, b.Counter); c != 0 {
		return c
	}
	return strings.Compare(a.Node, b.Node)
}

// Less reports Compare(v, o) < 0.
func (v Version) Less(o Version) bool { return Compare(v, o) < 0 }

// String writes "wall.counter@node", e.g. "1732291200123.4@node-a".
func (v Version) String() string {
	return strconv.FormatInt(v.Wall, 10) + "." + strconv.FormatUint(uint64(v.Counter), 10) + "@" + v.Node
}

// ParseVersion parses the String form.
func ParseVersion(s string) (Version, error) {
	stamp, node, ok := strings.Cut(s, "@")
	if !ok || node == "" {
		return Version{}, fmt.Errorf("version %q: want wall.counter@node, e.g. 1732291200123.4@node-a", s)
	}
	w, c, ok := strings.Cut(stamp, ".")
	if !ok {
		return Version{}, fmt.Errorf("version %q: want wall.counter@node, e.g. 1732291200123.4@node-a", s)
	}
	wall, err := strconv.ParseInt(w, 10, 64)
	if err != nil || wall < 0 {
		return Version{}, fmt.Errorf("version %q: bad wall clock %q", s, w)
	}
	counter, err := strconv.ParseUint(c, 10, 32)
	if err != nil {
		return Version{}, fmt.Errorf("version %q: bad counter %q", s, c)
	}
	return Version{Wall: wall, Counter: uint32(counter), Node: node}, nil
}

// NextVersion returns the version a node named node assigns to an update accepted at
// now, given last, the highest version the node has seen (its own or from peers, any
// name). The result is higher than last and, when clocks agree, close to now.
func NextVersion(last Version, now time.Time, node string) Version {
	ms := now.UnixMilli()
	if ms > last.Wall {
		return Version{Wall: ms, Node: node}
	}
	if last.Counter == ^uint32(0) {
		return Version{Wall: last.Wall + 1, Node: node}
	}
	return Version{Wall: last.Wall, Counter: last.Counter + 1, Node: node}
}

// Observe returns the clock state after seeing remote: the higher of the two.
func Observe(last, remote Version) Version {
	if Compare(remote, last) > 0 {
		return remote
	}
	return last
}
