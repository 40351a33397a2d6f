package runtime

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"regexp"
	"time"
)

// Driver names.
const (
	DriverExec   = "exec"
	DriverDocker = "docker"
)

// Restart policies.
const (
	RestartAlways    = "always"
	RestartOnFailure = "on-failure"
	RestartNever     = "never"
)

// InstanceSpec is one instance this node must run. The agent translates
// intents and placements into specs; the supervisor keeps them running.
type InstanceSpec struct {
	// ID names the instance on this node (e.g. "vision-0"); unique in a
	// desired set. Letters, digits, '.', '_' and '-', at most 128 bytes.
	ID string `json:"id"`
	// Intent is the name of the workload intent the instance belongs to.
	Intent string `json:"intent"`
	// Generation comes from the placement (region Raft log); a different
	// generation for the same ID is a different instance and replaces it.
	Generation uint64 `json:"generation"`
	// Driver is "exec" or "docker".
	Driver string `json:"driver"`
	// Command is argv (exec: Command[0] is the program, no shell; docker:
	// overrides the image's CMD when set).
	Command []string `json:"command,omitempty"`
	// Image is the Docker image reference (docker only). Never pulled.
	Image     string            `json:"image,omitempty"`
	Env       map[string]string `json:"env,omitempty"`
	Resources Resources         `json:"resources"`
	Restart   RestartSpec       `json:"restart"`
	Health    HealthSpec        `json:"health"`
	// StopGrace, if set, replaces Config.StopGrace (SIGTERM to SIGKILL) when the
	// supervisor stops this instance: an at-most-once instance must be gone before
	// its node's lease ends.
	StopGrace time.Duration `json:"stopGrace,omitempty"`
	// Leased marks an at-most-once instance: it may run only while the agent holds
	// a lease for it, and that lease does not outlive the agent process. So the
	// supervisor never starts it again from the persisted desired set (a restarted
	// agent stops a leased instance it finds and waits to be told again), and the
	// exec driver has the kernel kill it when the agent dies.
	Leased bool `json:"leased,omitempty"`
}

// Resources are the instance's limits (and its share of the node's load).
type Resources struct {
	MilliCPU    int64 `json:"milliCPU,omitempty"`
	MemoryBytes int64 `json:"memoryBytes,omitempty"`
}

// RestartSpec says when the supervisor restarts an exited instance.
type RestartSpec struct {
	// Policy is always (default), on-failure or never.
	Policy string `json:"policy,omitempty"`
	// MaxBackoff caps the restart delay (default Config.DefaultMaxBackoff).
	MaxBackoff time.Duration `json:"maxBackoff,omitempty"`
}

// HealthSpec configures at most one probe kind. With no probe the instance
// is "running" as soon as it has started.
type HealthSpec struct {
	// HTTP is a URL dialed from the node; 2xx and 3xx are healthy.
	HTTP string `json:"http,omitempty"`
	// TCP is a host:port dialed from the node.
	TCP string `json:"tcp,omitempty"`
	// Exec is argv run on the node (exec driver) or inside the container
	// (docker driver); exit status 0 is healthy.
	Exec []string `json:"exec,omitempty"`
	// Interval between probes (default 5s); Timeout per probe (default 2s);
	// FailureThreshold consecutive failures make the instance unhealthy
	// (default 3).
	Interval         time.Duration `json:"interval,omitempty"`
	Timeout          time.Duration `json:"timeout,omitempty"`
	FailureThreshold int           `json:"failureThreshold,omitempty"`
}

// Enabled reports whether a probe is configured.
func (h HealthSpec) Enabled() bool { return h.HTTP != "" || h.TCP != "" || len(h.Exec) > 0 }

// ErrInvalidSpec marks errors that retrying cannot fix (missing binary,
// missing image, bad limits): the instance goes failed until its spec changes.
var ErrInvalidSpec = errors.New("invalid instance spec")

var idPattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$`)

// ValidInstanceID reports whether id can name an instance (InstanceSpec.ID).
func ValidInstanceID(id string) bool { return idPattern.MatchString(id) }

// specError is a bad field with the fix; it wraps ErrInvalidSpec.
func specError(id, field, format string, args ...any) error {
	return fmt.Errorf("%w: instance %q: %s: %s", ErrInvalidSpec, id, field, fmt.Sprintf(format, args...))
}

// Validate checks a spec without touching the system. Errors name the field
// and the fix and wrap ErrInvalidSpec.
func (s InstanceSpec) Validate() error {
	if !idPattern.MatchString(s.ID) {
		return specError(s.ID, "id", "must be 1-128 letters, digits, '.', '_' or '-', starting with a letter or digit")
	}
	if s.StopGrace < 0 {
		return specError(s.ID, "stopGrace", "must not be negative")
	}
	switch s.Driver {
	case DriverExec:
		if len(s.Command) == 0 || s.Command[0] == "" {
			return specError(s.ID, "command", "exec driver needs command [program, args...]")
		}
	case DriverDocker:
		if s.Image == "" {
			return specError(s.ID, "image", "docker driver needs an image, e.g. vision:1.4")
		}
	default:
		return specError(s.ID, "driver", "unknown driver %q; use exec or docker", s.Driver)
	}
	if s.Resources.MilliCPU < 0 {
		return specError(s.ID, "resources.cpu", "must not be negative (got %dm)", s.Resources.MilliCPU)
	}
	if s.Resources.MemoryBytes < 0 {
		return specError(s.ID, "resources.memory", "must not be negative (got %d bytes)", s.Resources.MemoryBytes)
	}
	if s.Resources.MemoryBytes > 0 && s.Resources.MemoryBytes < minMemoryBytes {
		return specError(s.ID, "resources.memory", "%d bytes is below the 6Mi minimum; raise it or leave it unset", s.Resources.MemoryBytes)
	}
	switch s.Restart.Policy {
	case "", RestartAlways, RestartOnFailure, RestartNever:
	default:
		return specError(s.ID, "restart.policy", "unknown policy %q; use always, on-failure or never", s.Restart.Policy)
	}
	if s.Restart.MaxBackoff < 0 {
		return specError(s.ID, "restart.maxBackoff", "must not be negative")
	}
	h := s.Health
	n := 0
	if h.HTTP != "" {
		n++
		u, err := url.Parse(h.HTTP)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return specError(s.ID, "health.http", "want an absolute http(s) URL like http://127.0.0.1:8080/healthz, got %q", h.HTTP)
		}
	}
	if h.TCP != "" {
		n++
	}
	if len(h.Exec) > 0 {
		n++
	}
	if n > 1 {
		return specError(s.ID, "health", "set only one of http, tcp and exec")
	}
	if h.Interval < 0 || h.Timeout < 0 || h.FailureThreshold < 0 {
		return specError(s.ID, "health", "interval, timeout and failureThreshold must not be negative")
	}
	return nil
}

// minMemoryBytes is the smallest memory limit accepted (Docker's minimum).
const minMemoryBytes = 6 << 20

// Hash identifies the spec's content: an instance whose running spec hash
// differs from the desired one is replaced.
func (s InstanceSpec) Hash() string {
	b, err := json.Marshal(s)
	if err != nil {
		panic(fmt.Sprintf("marshal instance spec: %v", err)) // plain data; cannot fail
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:8])
}

func (s InstanceSpec) restartPolicy() string {
	if s.Restart.Policy == "" {
		return RestartAlways
	}
	return s.Restart.Policy
}

func (s InstanceSpec) clone() InstanceSpec {
	c := s
	c.Command = append([]string(nil), s.Command...)
	c.Health.Exec = append([]string(nil), s.Health.Exec...)
	if s.Env != nil {
		c.Env = make(map[string]string, len(s.Env))
		for k, v := range s.Env {
			c.Env[k] = v
		}
	}
	return c
}
