package policy

import (
	"path"
	"strings"
)

// Admit checks a valid, normalised Workload against the Policies in force and returns
// every violation (nil when admitted). A Policy applies when either side names no
// regions or their regions overlap. Intents of other kinds are always admitted.
func Admit(w *Intent, policies []*Intent) Problems {
	if w.Workload == nil {
		return nil
	}
	var ps Problems
	for _, p := range policies {
		if p.Policy == nil || p.Policy.Admission == nil || !overlaps(w.Workload.Regions, p.Policy.Regions) {
			continue
		}
		a, name := p.Policy.Admission, p.Name()
		spec := w.Workload
		if len(a.AllowedDrivers) > 0 && !contains(a.AllowedDrivers, spec.Driver) {
			ps.add("spec.driver", "driver %q is not allowed by policy %q (allowedDrivers: %s)", spec.Driver, name, strings.Join(a.AllowedDrivers, ", "))
		}
		if spec.Driver == "docker" && len(a.AllowedImages) > 0 && !matchAny(a.AllowedImages, spec.Image) {
			ps.add("spec.image", "image %q is not allowed by policy %q (allowedImages: %s)", spec.Image, name, strings.Join(a.AllowedImages, ", "))
		}
		if a.MaxCPU != "" {
			if max, err := ParseCPU(string(a.MaxCPU)); err == nil && spec.CPUMilli() > max {
				ps.add("spec.resources.cpu", "%s exceeds the maximum %s of policy %q", spec.Resources.CPU, a.MaxCPU, name)
			}
		}
		if a.MaxMemory != "" {
			if max, err := ParseMemory(string(a.MaxMemory)); err == nil && spec.MemoryBytes() > max {
				ps.add("spec.resources.memory", "%s exceeds the maximum %s of policy %q", spec.Resources.Memory, a.MaxMemory, name)
			}
		}
	}
	return ps
}

func overlaps(a, b []string) bool {
	if len(a) == 0 || len(b) == 0 {
		return true
	}
	for _, x := range a {
		if contains(b, x) {
			return true
		}
	}
	return false
}

func contains(xs []string, s string) bool {
	for _, x := range xs {
		if x == s {
			return true
		}
	}
	return false
}

// matchAny reports whether image matches one of the globs (path.Match: '*' does not
// cross '/', so "registry.local/*" allows "registry.local/vision:1.4" but not
// "registry.local/team/vision").
func matchAny(globs []string, image string) bool {
	for _, g := range globs {
		if ok, err := path.Match(g, image); err == nil && ok {
			return true
		}
	}
	return false
}
