package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// murmurSplit runs the CLI with stdout and stderr apart.
func murmurSplit(t *testing.T, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, murmurBin(t), args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("murmur %v: %v", args, err)
	}
	return out.String(), errOut.String(), code
}

// TestRealLogsAndVersion: `murmur logs` against a real agent with API tokens prints
// an instance's stdout on stdout and its stderr on stderr, needs a write token, says
// which instance is unknown, and with -f ends when the instance's run ends.
// `murmur version` prints the version, commit and Go version.
func TestRealLogsAndVersion(t *testing.T) {
	dir := t.TempDir()
	const (
		read  = "read-secret-0123456789"
		write = "write-secret-0123456789"
	)
	acl := filepath.Join(dir, "acl.yaml")
	if err := os.WriteFile(acl, []byte("tokens:\n  - {id: dash, role: read, secret: "+read+"}\n  - {id: ci, role: write, secret: "+write+"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startAgent(t, "logs1", freePort(t), "--acl-file", acl)
	spec := filepath.Join(dir, "talk.yaml")
	if err := os.WriteFile(spec, []byte(`apiVersion: murmur/v1
kind: Workload
metadata: {name: talk}
spec:
  replicas: 1
  driver: exec
  command: ["/bin/sh", "-c", "echo hello-out; echo hello-err >&2; sleep 2; echo bye"]
  restart: {policy: never}
  resources: {cpu: 50m, memory: 16Mi}
`), 0o600); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the API answers", func() bool { return getJSONWith(p.http, "/v1/status", read, &map[string]any{}) == nil })
	if out, _, code := murmurSplit(t, "apply", "-f", spec, "--token", write, "--addr", p.http); code != 0 {
		t.Fatalf("apply: exit %d %s", code, out)
	}
	var id string
	eventually(t, 30*time.Second, "talk placed", func() bool {
		var st struct {
			Instances []struct {
				ID     string `json:"id"`
				Intent string `json:"intent"`
			} `json:"instances"`
		}
		if getJSONWith(p.http, "/v1/status", read, &st) != nil {
			return false
		}
		for _, in := range st.Instances {
			if in.Intent == "talk" {
				id = in.ID
				return true
			}
		}
		return false
	})
	eventually(t, 30*time.Second, "talk wrote hello-out", func() bool {
		out, _, code := murmurSplit(t, "logs", id, "--stream", "stdout", "--token", write, "--addr", p.http)
		return code == 0 && strings.HasPrefix(out, "hello-out\n")
	})

	out, errOut, code := murmurSplit(t, "logs", id, "--token", write, "--addr", p.http)
	if code != 0 || !strings.HasPrefix(out, "hello-out\n") || errOut != "hello-err\n" {
		t.Errorf("logs: exit %d, stdout %q, stderr %q; want hello-out on stdout, hello-err on stderr", code, out, errOut)
	}
	// -f prints what is there, then what comes, and ends with the run.
	out, _, code = murmurSplit(t, "logs", id, "-f", "--stream", "stdout", "--token", write, "--addr", p.http)
	if code != 0 || out != "hello-out\nbye\n" {
		t.Errorf("logs -f: exit %d, stdout %q; want hello-out and bye, exit 0 once the run ended", code, out)
	}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"logs", id, "--token", read}, "needs a token with role write"},
		{[]string{"logs", "nobody-9", "--token", write}, `no instance "nobody-9"`},
		{[]string{"logs", id, "--tail", "x", "--token", write}, "invalid --tail"},
		{[]string{"logs", id, "--stream", "all", "--token", write}, "invalid --stream"},
		{[]string{"logs", id, "--max-bytes", "64Mi", "--token", write}, "invalid --max-bytes"},
		{[]string{"logs", "--token", write}, "give one instance id"},
	} {
		_, errOut, code := murmurSplit(t, append(c.args, "--addr", p.http)...)
		if code != 2 || !strings.Contains(errOut, c.want) {
			t.Errorf("murmur %v: exit %d %q, want exit 2 saying %q", c.args, code, errOut, c.want)
		}
	}

	out, _, code = murmurSplit(t, "version")
	if code != 0 || !strings.HasPrefix(out, "murmur ") || !strings.Contains(out, "\ncommit: ") || !strings.Contains(out, "\ngo:     go1.") {
		t.Errorf("version: exit %d %q", code, out)
	}
	out, _, code = murmurSplit(t, "version", "--json")
	var b struct{ Version, Commit, Go, Platform string }
	if err := json.Unmarshal([]byte(out), &b); code != 0 || err != nil || b.Version == "" || b.Commit == "" || !strings.HasPrefix(b.Go, "go1.") || b.Platform == "" {
		t.Errorf("version --json: exit %d %q (%v)", code, out, err)
	}
}
