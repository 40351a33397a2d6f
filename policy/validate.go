package policy

import (
	"net/url"
	"path"
	"regexp"
	"sort"
	"time"
)

// Defaults (documented in docs/intents.md).
const (
	DefaultReplicas     = 1
	DefaultPriority     = 50
	DefaultCPU          = "100m"
	DefaultMemory       = "64Mi"
	DefaultRestart      = "always"
	DefaultMaxBackoff   = "30s"
	DefaultHealthEvery  = "5s"
	DefaultHealthTimout = "2s"
	DefaultReplaceAfter = "0s"
	DefaultReconcile    = ReconcileKeepReplacement
	DefaultCPUAbove     = 0.85
	DefaultMemoryAbove  = 0.90
	DefaultSustainedFor = "10s"
	DefaultCooldown     = "30s"
)

var (
	dnsLabelRE = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)
	labelKeyRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._/-]*[A-Za-z0-9])?$`)
	labelValRE = regexp.MustCompile(`^([A-Za-z0-9]([A-Za-z0-9._-]*[A-Za-z0-9])?)?$`)
	envKeyRE   = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
)

// ValidName reports whether s is a DNS label (1-63 of a-z, 0-9 and '-', starting and
// ending with a letter or digit): the rule for intent, region and node-facing names.
func ValidName(s string) bool { return len(s) <= MaxNameLen && dnsLabelRE.MatchString(s) }

// Default fills unset fields with their defaults. It never overrides a set field.
func Default(in *Intent) {
	if w := in.Workload; w != nil {
		if w.Mode == "" {
			w.Mode = ModeReplicated
		}
		if w.Mode == ModeReplicated && w.Replicas == nil {
			r := DefaultReplicas
			w.Replicas = &r
		}
		if w.Resources.CPU == "" {
			w.Resources.CPU = DefaultCPU
		}
		if w.Resources.Memory == "" {
			w.Resources.Memory = DefaultMemory
		}
		if w.Priority == nil {
			p := DefaultPriority
			w.Priority = &p
		}
		if w.Restart.Policy == "" {
			w.Restart.Policy = DefaultRestart
		}
		if w.Restart.MaxBackoff == "" {
			w.Restart.MaxBackoff = DefaultMaxBackoff
		}
		if h := w.Health; h != nil {
			if h.Interval == "" {
				h.Interval = DefaultHealthEvery
			}
			if h.Timeout == "" {
				h.Timeout = DefaultHealthTimout
			}
		}
		if w.Disconnect.ReplaceAfter == "" {
			w.Disconnect.ReplaceAfter = DefaultReplaceAfter
		}
		if w.Disconnect.Reconcile == "" {
			w.Disconnect.Reconcile = DefaultReconcile
		}
	}
	if p := in.Policy; p != nil && p.Offload != nil {
		o := p.Offload
		if o.CPUAbove == nil {
			v := DefaultCPUAbove
			o.CPUAbove = &v
		}
		if o.MemoryAbove == nil {
			v := DefaultMemoryAbove
			o.MemoryAbove = &v
		}
		if o.SustainedFor == "" {
			o.SustainedFor = DefaultSustainedFor
		}
		if o.Cooldown == "" {
			o.Cooldown = DefaultCooldown
		}
	}
}

// Validate reports every invalid field of a defaulted intent. It returns nil when the
// intent is valid.
func Validate(in *Intent) Problems {
	var ps Problems
	switch {
	case in.APIVersion == "":
		ps.add("apiVersion", "required; set apiVersion: %s", APIVersion)
	case in.APIVersion != APIVersion:
		ps.add("apiVersion", "unsupported version %q; set apiVersion: %s", in.APIVersion, APIVersion)
	}
	switch {
	case in.Metadata.Name == "":
		ps.add("metadata.name", "required; a DNS label such as \"vision\"")
	case !ValidName(in.Metadata.Name):
		ps.add("metadata.name", "%q is not a DNS label: use 1-63 lowercase letters, digits and '-', starting and ending with a letter or digit", in.Metadata.Name)
	}
	validateLabels("metadata.labels", in.Metadata.Labels, &ps)
	if s := in.Signature; s != nil {
		if s.KeyID == "" {
			ps.add("signature.keyId", "required when signature is set")
		}
		if s.Value == "" {
			ps.add("signature.value", "required when signature is set")
		}
		if s.Version != "" {
			if _, err := s.SignedVersion(); err != nil {
				ps.add("signature.version", "%v", err)
			}
		}
	}
	switch in.Kind {
	case KindWorkload:
		if in.Workload == nil {
			ps.add("spec", "required")
		} else {
			validateWorkload(in.Workload, &ps)
		}
	case KindPolicy:
		if in.Policy == nil {
			ps.add("spec", "required")
		} else {
			validatePolicy(in.Policy, &ps)
		}
	case "":
		ps.add("kind", "required; set kind: Workload or kind: Policy")
	default:
		ps.add("kind", "unknown kind %q; want Workload or Policy", in.Kind)
	}
	return ps
}

func validateLabels(field string, m map[string]string, ps *Problems) {
	if len(m) > MaxLabels {
		ps.add(field, "has %d labels; at most %d are allowed", len(m), MaxLabels)
	}
	for _, k := range sortedKeys(m) {
		if len(k) > 63 || !labelKeyRE.MatchString(k) {
			ps.add(join(field, k), "invalid label key: use 1-63 letters, digits, '.', '_', '/', '-', starting and ending with a letter or digit")
		}
		if v := m[k]; len(v) > 63 || !labelValRE.MatchString(v) {
			ps.add(join(field, k), "invalid label value %q: use at most 63 letters, digits, '.', '_', '-', starting and ending with a letter or digit", v)
		}
	}
}

func validateRegions(field string, rs []string, ps *Problems) {
	if len(rs) > MaxRegions {
		ps.add(field, "has %d regions; at most %d are allowed", len(rs), MaxRegions)
	}
	seen := map[string]bool{}
	for i, r := range rs {
		f := field + "[" + itoa(i) + "]"
		if !ValidName(r) {
			ps.add(f, "%q is not a region name (a DNS label)", r)
		}
		if seen[r] {
			ps.add(f, "region %q is listed twice", r)
		}
		seen[r] = true
	}
}

func validateDuration(field string, d Duration, lo, hi time.Duration, ps *Problems) {
	v, err := ParseDuration(string(d))
	if err != nil {
		ps.add(field, "%s", err.Error())
		return
	}
	if v < lo || v > hi {
		ps.add(field, "must be between %s and %s (got %s)", lo, hi, v)
	}
}

func validateWorkload(w *WorkloadSpec, ps *Problems) {
	switch w.Mode {
	case ModeReplicated:
		if w.Replicas != nil && (*w.Replicas < 0 || *w.Replicas > MaxReplicas) {
			ps.add("spec.replicas", "must be between 0 and %d (got %d)", MaxReplicas, *w.Replicas)
		}
	case ModeGlobal:
		if w.Replicas != nil {
			ps.add("spec.replicas", "must not be set with mode: global (one instance per eligible node)")
		}
	default:
		ps.add("spec.mode", "unknown mode %q; want replicated or global", w.Mode)
	}
	validateRegions("spec.regions", w.Regions, ps)
	switch w.Driver {
	case "exec":
		if len(w.Command) == 0 {
			ps.add("spec.command", "required with driver: exec, e.g. [\"/bin/sleep\", \"3600\"]")
		}
		if w.Image != "" {
			ps.add("spec.image", "only valid with driver: docker")
		}
	case "docker":
		if w.Image == "" {
			ps.add("spec.image", "required with driver: docker, e.g. \"registry.local/vision:1.4\"")
		}
	case "":
		ps.add("spec.driver", "required; set driver: exec or driver: docker")
	default:
		ps.add("spec.driver", "unknown driver %q; want exec or docker", w.Driver)
	}
	if len(w.Command) > MaxListItems {
		ps.add("spec.command", "has %d entries; at most %d are allowed", len(w.Command), MaxListItems)
	}
	if len(w.Command) > 0 && w.Command[0] == "" {
		ps.add("spec.command[0]", "the program must not be empty")
	}
	if len(w.Env) > MaxListItems {
		ps.add("spec.env", "has %d entries; at most %d are allowed", len(w.Env), MaxListItems)
	}
	for _, k := range sortedKeys(w.Env) {
		if !envKeyRE.MatchString(k) {
			ps.add(join("spec.env", k), "invalid variable name: use letters, digits and '_', not starting with a digit")
		}
	}
	if c, err := ParseCPU(string(w.Resources.CPU)); err != nil {
		ps.add("spec.resources.cpu", "%s", err.Error())
	} else if c <= 0 || c > 1_000_000 {
		ps.add("spec.resources.cpu", "must be between 1m and 1000 cores (got %s)", w.Resources.CPU)
	}
	if m, err := ParseMemory(string(w.Resources.Memory)); err != nil {
		ps.add("spec.resources.memory", "%s", err.Error())
	} else if m < MinMemoryBytes || m > 1<<50 {
		ps.add("spec.resources.memory", "must be between 6Mi (the smallest limit a container runtime enforces) and 1Pi (got %s)", w.Resources.Memory)
	}
	validateLabels("spec.constraints.labels", w.Constraints.Labels, ps)
	if w.Priority != nil && (*w.Priority < 0 || *w.Priority > 100) {
		ps.add("spec.priority", "must be between 0 and 100 (got %d)", *w.Priority)
	}
	switch w.Restart.Policy {
	case "always", "on-failure", "never":
	default:
		ps.add("spec.restart.policy", "unknown policy %q; want always, on-failure or never", w.Restart.Policy)
	}
	validateDuration("spec.restart.maxBackoff", w.Restart.MaxBackoff, time.Second, time.Hour, ps)
	if h := w.Health; h != nil {
		u, err := url.Parse(h.HTTP)
		switch {
		case h.HTTP == "":
			ps.add("spec.health.http", "required when health is set, e.g. \"http://127.0.0.1:8080/healthz\"")
		case err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "":
			ps.add("spec.health.http", "%q is not an http:// or https:// URL with a host", h.HTTP)
		}
		validateDuration("spec.health.interval", h.Interval, time.Second, time.Hour, ps)
		validateDuration("spec.health.timeout", h.Timeout, time.Millisecond, time.Hour, ps)
		iv, e1 := ParseDuration(string(h.Interval))
		to, e2 := ParseDuration(string(h.Timeout))
		if e1 == nil && e2 == nil && to > iv {
			ps.add("spec.health.timeout", "must not exceed spec.health.interval (%s)", iv)
		}
	}
	validateDuration("spec.disconnect.replaceAfter", w.Disconnect.ReplaceAfter, 0, 24*time.Hour, ps)
	switch r := w.Disconnect.Reconcile; {
	case r == "" || r == ReconcileKeepReplacement:
	case w.Exclusive && (r == ReconcileKeepOriginal || r == ReconcileBestScore || r == reconcileLegacy):
		ps.add("spec.disconnect.reconcile", "an exclusive workload always keeps the replacement (its original stopped when its lease ran out): remove reconcile or set keep_replacement")
	case r == ReconcileKeepOriginal || r == ReconcileBestScore:
	default:
		ps.add("spec.disconnect.reconcile", "unknown rule %q; want keep_replacement (the default), keep_original or best_score", r)
	}
}

func validatePolicy(p *PolicySpec, ps *Problems) {
	validateRegions("spec.regions", p.Regions, ps)
	if p.Offload == nil && p.Admission == nil {
		ps.add("spec", "a Policy needs offload, admission or both")
	}
	if o := p.Offload; o != nil {
		if o.CPUAbove != nil && (*o.CPUAbove <= 0 || *o.CPUAbove > 1) {
			ps.add("spec.offload.cpuAbove", "must be a fraction in (0, 1] (got %v)", *o.CPUAbove)
		}
		if o.MemoryAbove != nil && (*o.MemoryAbove <= 0 || *o.MemoryAbove > 1) {
			ps.add("spec.offload.memoryAbove", "must be a fraction in (0, 1] (got %v)", *o.MemoryAbove)
		}
		validateDuration("spec.offload.sustainedFor", o.SustainedFor, 0, time.Hour, ps)
		validateDuration("spec.offload.cooldown", o.Cooldown, 0, 24*time.Hour, ps)
	}
	if a := p.Admission; a != nil {
		seen := map[string]bool{}
		for i, d := range a.AllowedDrivers {
			f := "spec.admission.allowedDrivers[" + itoa(i) + "]"
			if d != "exec" && d != "docker" {
				ps.add(f, "unknown driver %q; want exec or docker", d)
			}
			if seen[d] {
				ps.add(f, "driver %q is listed twice", d)
			}
			seen[d] = true
		}
		if len(a.AllowedImages) > MaxListItems {
			ps.add("spec.admission.allowedImages", "has %d entries; at most %d are allowed", len(a.AllowedImages), MaxListItems)
		}
		for i, g := range a.AllowedImages {
			if _, err := path.Match(g, ""); err != nil || g == "" {
				ps.add("spec.admission.allowedImages["+itoa(i)+"]", "%q is not a valid glob (use * and ? as in \"registry.local/*\")", g)
			}
		}
		if a.MaxCPU != "" {
			if c, err := ParseCPU(string(a.MaxCPU)); err != nil {
				ps.add("spec.admission.maxCPU", "%s", err.Error())
			} else if c <= 0 {
				ps.add("spec.admission.maxCPU", "must be positive")
			}
		}
		if a.MaxMemory != "" {
			if m, err := ParseMemory(string(a.MaxMemory)); err != nil {
				ps.add("spec.admission.maxMemory", "%s", err.Error())
			} else if m <= 0 {
				ps.add("spec.admission.maxMemory", "must be positive")
			}
		}
	}
}

// Normalize rewrites a valid intent into its canonical form: quantities and durations
// in canonical spelling, order-free lists sorted. Two intents that mean the same thing
// normalise to the same Canonical bytes.
func Normalize(in *Intent) {
	normDur := func(d *Duration) {
		if v, err := ParseDuration(string(*d)); err == nil {
			*d = Duration(v.String())
		}
	}
	if w := in.Workload; w != nil {
		sort.Strings(w.Regions)
		if v, err := ParseCPU(string(w.Resources.CPU)); err == nil {
			w.Resources.CPU = Quantity(FormatCPU(v))
		}
		if v, err := ParseMemory(string(w.Resources.Memory)); err == nil {
			w.Resources.Memory = Quantity(FormatMemory(v))
		}
		normDur(&w.Restart.MaxBackoff)
		normDur(&w.Disconnect.ReplaceAfter)
		if w.Health != nil {
			normDur(&w.Health.Interval)
			normDur(&w.Health.Timeout)
		}
		if len(w.Env) == 0 {
			w.Env = nil
		}
		if len(w.Constraints.Labels) == 0 {
			w.Constraints.Labels = nil
		}
	}
	if p := in.Policy; p != nil {
		sort.Strings(p.Regions)
		if o := p.Offload; o != nil {
			normDur(&o.SustainedFor)
			normDur(&o.Cooldown)
		}
		if a := p.Admission; a != nil {
			sort.Strings(a.AllowedDrivers)
			sort.Strings(a.AllowedImages)
			if a.MaxCPU != "" {
				if v, err := ParseCPU(string(a.MaxCPU)); err == nil {
					a.MaxCPU = Quantity(FormatCPU(v))
				}
			}
			if a.MaxMemory != "" {
				if v, err := ParseMemory(string(a.MaxMemory)); err == nil {
					a.MaxMemory = Quantity(FormatMemory(v))
				}
			}
		}
	}
	if len(in.Metadata.Labels) == 0 {
		in.Metadata.Labels = nil
	}
}

func sortedKeys(m map[string]string) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	sort.Strings(ks)
	return ks
}

func itoa(i int) string {
	const digits = "0123456789"
	if i < 10 {
		return digits[i : i+1]
	}
	return itoa(i/10) + digits[i%10:i%10+1]
}
