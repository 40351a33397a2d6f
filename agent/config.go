package agent

import (
	"github.com/murmur-edge/murmur/agent/secure"

	"errors"
	"fmt"
	"net"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/murmur-edge/murmur/agent/coordinator"
	"github.com/murmur-edge/murmur/agent/region"
	"github.com/murmur-edge/murmur/policy"
)

// Version is set at build time (-ldflags -X).
var Version = "dev"

// Resources is an amount of CPU (millicores) and memory (bytes).
type Resources struct {
	MilliCPU    int64
	MemoryBytes int64
}

func (r Resources) String() string {
	return fmt.Sprintf("cpu=%s,memory=%s", policy.FormatCPU(r.MilliCPU), policy.FormatMemory(r.MemoryBytes))
}

// ParseResources parses "cpu=2000m,memory=1Gi" (either key may be left out; a left out
// key keeps its value from def).
func ParseResources(s string, def Resources) (Resources, error) {
	r := def
	if strings.TrimSpace(s) == "" {
		return r, errors.New("empty: want cpu=QUANTITY,memory=QUANTITY, e.g. cpu=500m,memory=256Mi")
	}
	for _, part := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if !ok {
			return r, fmt.Errorf("%q is not key=value: want cpu=QUANTITY,memory=QUANTITY, e.g. cpu=500m,memory=256Mi", part)
		}
		switch strings.TrimSpace(k) {
		case "cpu":
			n, err := policy.ParseCPU(strings.TrimSpace(v))
			if err != nil {
				return r, fmt.Errorf("cpu: %w", err)
			}
			if n <= 0 {
				return r, errors.New("cpu: must be more than 0")
			}
			r.MilliCPU = n
		case "memory":
			n, err := policy.ParseMemory(strings.TrimSpace(v))
			if err != nil {
				return r, fmt.Errorf("memory: %w", err)
			}
			if n <= 0 {
				return r, errors.New("memory: must be more than 0")
			}
			r.MemoryBytes = n
		default:
			return r, fmt.Errorf("unknown resource %q: use cpu and memory", k)
		}
	}
	return r, nil
}

// Config is everything an agent needs; cmd/murmur fills it from flags, a YAML file
// and MURMUR_* environment variables.
type Config struct {
	Name       string
	Region     string
	Labels     map[string]string
	Bind       string   // gossip host:port
	Advertise  string   // gossip host:port others reach us at ("" = derived)
	Join       []string // seeds, host:port
	HTTP       string   // API host:port
	RaftBind   string   // "" = gossip port + 1
	DataDir    string
	Capacity   Resources // zero = detected
	Reserve    Resources // what the OS and the agent itself keep
	EncryptKey []byte
	// TLS names the fleet CA and this node's certificate and key: with them every
	// agent-to-agent TCP connection is mutual TLS (see agent/secure).
	TLS secure.TLSFiles
	// Insecure lets an agent reachable beyond loopback start without encryption and
	// TLS; it warns every minute and says so in /v1/status and murmur_insecure.
	Insecure  bool
	Profile   string // lan | wan
	LogLevel  string
	LogFormat string

	APITokenFile string   // one admin token with id "api-token" (see ACLFile)
	TrustKeys    []string // files of ed25519 public keys intents must be signed with

	// ACLFile is a YAML file of API tokens with roles (read, write, admin). When it or
	// APITokenFile gives a token, every request needs one; when neither does, the API
	// must be loopback and is open. See acl.go.
	ACLFile string
	// HTTPOpenMetrics leaves /healthz and /metrics open when tokens are enforced.
	HTTPOpenMetrics bool
	// AuditMaxBytes is the size at which <data-dir>/audit.log is rotated
	// (0: DefaultAuditMaxBytes).
	AuditMaxBytes int64

	Voters              int  // target voters per region (0 = automatic)
	CoordinatorEligible bool // may become a Raft voter
	// NoWitness refuses witness duty for other regions (--witness=false); WitnessFor
	// names regions this node prefers to be a witness of (--witness-for).
	NoWitness  bool
	WitnessFor []string
	// Lease is the lease of exclusive workloads this node asks its coordinator for
	// (--lease; 0: coordinator.DefaultLease). Its instances stop Lease/4 before it
	// runs out; a lost node's are replaced once it has.
	Lease           time.Duration
	BootstrapExpect int // wait for this many eligible nodes before a region's first bootstrap (0 = settle rule)
}

// FieldError is a configuration problem, naming the flag.
type FieldError struct {
	Field string // flag name, e.g. "bind"
	Err   error
}

func (e *FieldError) Error() string { return fmt.Sprintf("invalid --%s: %v", e.Field, e.Err) }
func (e *FieldError) Unwrap() error { return e.Err }

var (
	dnsLabel   = regexp.MustCompile(`^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)
	nodeName   = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,126}[A-Za-z0-9])?$`)
	labelKey   = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._/-]{0,61}[A-Za-z0-9])?$`)
	labelValue = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?)?$`)
)

// Validate checks c and fills derived defaults. The first problem is returned as a
// *FieldError.
func (c *Config) Validate() error {
	if !nodeName.MatchString(c.Name) {
		return &FieldError{"name", fmt.Errorf("%q must be 1-128 letters, digits, '.', '_' or '-', starting and ending with a letter or digit", c.Name)}
	}
	if c.Region == "" {
		c.Region = "default"
	}
	if !dnsLabel.MatchString(c.Region) {
		return &FieldError{"region", fmt.Errorf("%q must be a DNS label: lowercase letters, digits and '-', at most 63", c.Region)}
	}
	for k, v := range c.Labels {
		if !labelKey.MatchString(k) {
			return &FieldError{"label", fmt.Errorf("key %q must be letters, digits, '.', '_', '/' or '-'", k)}
		}
		if !labelValue.MatchString(v) {
			return &FieldError{"label", fmt.Errorf("value %q of %s must be at most 63 letters, digits, '.', '_' or '-'", v, k)}
		}
	}
	if err := checkHostPort(c.Bind, true); err != nil {
		return &FieldError{"bind", err}
	}
	if c.Advertise != "" {
		if err := checkHostPort(c.Advertise, false); err != nil {
			return &FieldError{"advertise", err}
		}
	}
	for _, j := range c.Join {
		if err := checkHostPort(j, false); err != nil {
			return &FieldError{"join", err}
		}
	}
	if err := checkHostPort(c.HTTP, true); err != nil {
		return &FieldError{"http", err}
	}
	if c.RaftBind == "" {
		host, port, _ := net.SplitHostPort(c.Bind)
		p, _ := strconv.Atoi(port)
		c.RaftBind = net.JoinHostPort(host, strconv.Itoa(p+1))
	}
	if err := checkHostPort(c.RaftBind, true); err != nil {
		return &FieldError{"raft-bind", err}
	}
	if c.DataDir == "" {
		return &FieldError{"data-dir", errors.New("is empty: give a directory murmur may write, e.g. /var/lib/murmur")}
	}
	switch len(c.EncryptKey) {
	case 0, 16, 24, 32:
	default:
		return &FieldError{"encrypt", fmt.Errorf("key is %d bytes: want a base64 key of 16, 24 or 32 bytes (make one with 'murmur keygen')", len(c.EncryptKey))}
	}
	switch c.Profile {
	case "":
		c.Profile = "lan"
	case "lan", "wan":
	default:
		return &FieldError{"profile", fmt.Errorf("%q: use lan or wan", c.Profile)}
	}
	if c.BootstrapExpect < 0 {
		return &FieldError{"bootstrap-expect", fmt.Errorf("%d: use 0 (settle rule) or the number of eligible nodes the region starts with", c.BootstrapExpect)}
	}
	if err := region.CheckVoters(c.Voters); err != nil {
		return &FieldError{"voters", err}
	}
	if err := checkWitnessFor(c.Region, c.WitnessFor); err != nil {
		return &FieldError{"witness-for", err}
	}
	if c.Lease == 0 {
		c.Lease = coordinator.DefaultLease
	}
	if c.Lease < 2*time.Second || c.Lease > coordinator.MaxLease {
		return &FieldError{"lease", fmt.Errorf("%v: use 2s to %v (exclusive workloads stop a quarter of it before it ends)", c.Lease, coordinator.MaxLease)}
	}
	return nil
}

func checkHostPort(s string, bind bool) error {
	host, port, err := net.SplitHostPort(s)
	if err != nil {
		return fmt.Errorf("%q is not host:port (e.g. 127.0.0.1:7946)", s)
	}
	p, err := strconv.Atoi(port)
	if err != nil || p < 0 || p > 65535 || (!bind && p == 0) {
		return fmt.Errorf("%q: port %q must be a number from 1 to 65535", s, port)
	}
	if host == "" {
		if bind {
			return nil
		}
		return fmt.Errorf("%q: give a host, e.g. 127.0.0.1:%s", s, port)
	}
	if bind && net.ParseIP(host) == nil {
		return fmt.Errorf("%q: bind to an IP address, not a host name (e.g. 127.0.0.1:%s)", s, port)
	}
	return nil
}

// ParseLabels turns ["k=v", ...] into a map.
func ParseLabels(in []string) (map[string]string, error) {
	out := make(map[string]string, len(in))
	for _, kv := range in {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return nil, &FieldError{"label", fmt.Errorf("%q is not key=value, e.g. --label camera=yes", kv)}
		}
		out[k] = v
	}
	return out, nil
}
