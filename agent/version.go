package agent

import (
	goruntime "runtime"
	"runtime/debug"
)

// Commit is the source commit, set at build time (-ldflags -X, see the Makefile).
// Empty: BuildInfo reads it from the binary's VCS stamp when there is one.
var Commit = ""

// Build describes this binary: `murmur version`.
type Build struct {
	Version   string `json:"version"`
	Commit    string `json:"commit"`
	GoVersion string `json:"go"`
	Platform  string `json:"platform"` // GOOS/GOARCH
}

// BuildInfo is this binary's Build: Version and Commit as linked in (make build,
// make release), else what the Go toolchain stamped (go build in a git checkout:
// vcs.revision, "-dirty" when vcs.modified; go install module@version: the module
// version), else "dev" and "unknown".
func BuildInfo() Build {
	b := Build{Version: Version, Commit: Commit, GoVersion: goruntime.Version(), Platform: goruntime.GOOS + "/" + goruntime.GOARCH}
	if bi, ok := debug.ReadBuildInfo(); ok {
		b = fromBuildInfo(b, bi)
	}
	if b.Commit == "" {
		b.Commit = "unknown"
	}
	return b
}

// fromBuildInfo fills what the linker left unset from the toolchain's stamp.
func fromBuildInfo(b Build, bi *debug.BuildInfo) Build {
	var rev string
	modified := false
	for _, s := range bi.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			modified = s.Value == "true"
		}
	}
	if b.Commit == "" && rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if modified {
			rev += "-dirty"
		}
		b.Commit = rev
	}
	if (b.Version == "" || b.Version == "dev") && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		b.Version = bi.Main.Version
	}
	if b.Version == "" {
		b.Version = "dev"
	}
	return b
}
