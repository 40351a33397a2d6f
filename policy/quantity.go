package policy

import (
	"fmt"
	"math/big"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Quantity is a resource amount as written by the operator: CPU as cores or millicores
// ("250m", "1", "0.5"), memory as bytes with an optional decimal (k, M, G, T, P, E) or
// binary (Ki, Mi, Gi, Ti, Pi, Ei) suffix ("64Mi", "500M", "1.5Gi", "1048576").
// YAML and JSON numbers are accepted too. Validation parses it; Canonical rewrites it in the
// canonical form (CPU "250m"/"2", memory "64Mi"/"500M"/"123").
type Quantity string

var quantityRE = regexp.MustCompile(`^([0-9]+(?:\.[0-9]+)?)([a-zA-Z]*)$`)

var quantityMultipliers = map[string]*big.Int{
	"":   big.NewInt(1),
	"k":  big.NewInt(1e3),
	"M":  big.NewInt(1e6),
	"G":  big.NewInt(1e9),
	"T":  big.NewInt(1e12),
	"P":  big.NewInt(1e15),
	"E":  big.NewInt(1e18),
	"Ki": big.NewInt(1 << 10),
	"Mi": big.NewInt(1 << 20),
	"Gi": big.NewInt(1 << 30),
	"Ti": big.NewInt(1 << 40),
	"Pi": big.NewInt(1 << 50),
	"Ei": big.NewInt(1 << 60),
}

// parseScaled parses s and returns its value times unit (1000 for CPU millicores, 1 for
// bytes) as an exact int64. The "m" suffix (1/1000) is allowed only when allowMilli.
func parseScaled(s string, unit int64, allowMilli bool) (int64, error) {
	m := quantityRE.FindStringSubmatch(strings.TrimSpace(s))
	if m == nil || len(s) > 64 {
		return 0, fmt.Errorf("%q is not a quantity (examples: %s)", s, examples(allowMilli))
	}
	r, ok := new(big.Rat).SetString(m[1])
	if !ok {
		return 0, fmt.Errorf("%q is not a quantity (examples: %s)", s, examples(allowMilli))
	}
	r.Mul(r, new(big.Rat).SetInt64(unit))
	switch suffix := m[2]; {
	case suffix == "m" && allowMilli:
		r.Quo(r, big.NewRat(1000, 1))
	default:
		mul, ok := quantityMultipliers[suffix]
		if !ok {
			return 0, fmt.Errorf("%q has an unknown suffix %q (examples: %s)", s, suffix, examples(allowMilli))
		}
		r.Mul(r, new(big.Rat).SetInt(mul))
	}
	if !r.IsInt() {
		if allowMilli {
			return 0, fmt.Errorf("%q is finer than 1m (one thousandth of a core)", s)
		}
		return 0, fmt.Errorf("%q is not a whole number of bytes", s)
	}
	if !r.Num().IsInt64() {
		return 0, fmt.Errorf("%q is too large", s)
	}
	return r.Num().Int64(), nil
}

func examples(cpu bool) string {
	if cpu {
		return `"250m", "1", "0.5"`
	}
	return `"64Mi", "1Gi", "500M", "1048576"`
}

// ParseCPU returns the CPU quantity in millicores ("250m" → 250, "2" → 2000).
func ParseCPU(s string) (int64, error) { return parseScaled(s, 1000, true) }

// ParseMemory returns the memory quantity in bytes ("64Mi" → 67108864, "500M" → 5e8).
func ParseMemory(s string) (int64, error) { return parseScaled(s, 1, false) }

// FormatCPU writes millicores canonically: whole cores as "2", otherwise "250m".
func FormatCPU(milli int64) string {
	if milli%1000 == 0 {
		return strconv.FormatInt(milli/1000, 10)
	}
	return strconv.FormatInt(milli, 10) + "m"
}

// FormatMemory writes bytes canonically: the largest binary suffix that divides it
// exactly, else the largest decimal one, else plain bytes.
func FormatMemory(b int64) string {
	if b == 0 {
		return "0"
	}
	for _, s := range []string{"Ei", "Pi", "Ti", "Gi", "Mi", "Ki"} {
		d := quantityMultipliers[s].Int64()
		if b%d == 0 {
			return strconv.FormatInt(b/d, 10) + s
		}
	}
	for _, s := range []string{"E", "P", "T", "G", "M", "k"} {
		d := quantityMultipliers[s].Int64()
		if b%d == 0 {
			return strconv.FormatInt(b/d, 10) + s
		}
	}
	return strconv.FormatInt(b, 10)
}

// Duration is a Go duration string ("30s", "1m30s", "0s") as written by the operator.
type Duration string

// ParseDuration parses a Duration; negative values are errors.
func ParseDuration(s string) (time.Duration, error) {
	d, err := time.ParseDuration(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a duration (examples: \"500ms\", \"30s\", \"5m\")", s)
	}
	if d < 0 {
		return 0, fmt.Errorf("%q is negative", s)
	}
	return d, nil
}
