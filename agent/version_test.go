package agent

import (
	"runtime/debug"
	"testing"
)

func TestFromBuildInfo(t *testing.T) {
	stamp := func(main string, kv ...string) *debug.BuildInfo {
		bi := &debug.BuildInfo{Main: debug.Module{Path: "github.com/murmur-edge/murmur", Version: main}}
		for i := 0; i+1 < len(kv); i += 2 {
			bi.Settings = append(bi.Settings, debug.BuildSetting{Key: kv[i], Value: kv[i+1]})
		}
		return bi
	}
	const rev = "0123456789abcdef0123456789abcdef01234567"
	cases := []struct {
		name         string
		linked       Build
		bi           *debug.BuildInfo
		wantV, wantC string
	}{
		{"linked wins", Build{Version: "v1.2.0", Commit: "abc123"}, stamp("(devel)", "vcs.revision", rev), "v1.2.0", "abc123"},
		{"vcs stamp", Build{Version: "dev"}, stamp("(devel)", "vcs.revision", rev, "vcs.modified", "false"), "dev", "0123456789ab"},
		{"dirty tree", Build{Version: "dev"}, stamp("(devel)", "vcs.revision", rev, "vcs.modified", "true"), "dev", "0123456789ab-dirty"},
		{"go install at a version", Build{Version: "dev"}, stamp("v0.4.0"), "v0.4.0", ""},
		{"nothing stamped", Build{Version: "dev"}, stamp("(devel)"), "dev", ""},
	}
	for _, c := range cases {
		got := fromBuildInfo(c.linked, c.bi)
		if got.Version != c.wantV || got.Commit != c.wantC {
			t.Errorf("%s: version %q commit %q, want %q %q", c.name, got.Version, got.Commit, c.wantV, c.wantC)
		}
	}
	if b := BuildInfo(); b.Version == "" || b.Commit == "" || b.GoVersion == "" || b.Platform == "" {
		t.Errorf("BuildInfo() = %+v: every field set", b)
	}
}
