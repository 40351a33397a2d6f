package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A loopback agent with --acl-file enforces its tokens: reads need read, writes need
// write, the audit needs admin; --http-open-metrics leaves /healthz open. `murmur
// audit` shows the write with its intent and version. A bad ACL file exits 2.
func TestRealACLFileAndAudit(t *testing.T) {
	dir := t.TempDir()
	const (
		read  = "read-secret-0123456789"
		write = "write-secret-0123456789"
		admin = "admin-secret-0123456789"
	)
	if err := os.WriteFile(filepath.Join(dir, "ci.token"), []byte(write+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	acl := filepath.Join(dir, "acl.yaml")
	file := "tokens:\n  - {id: dash, role: read, secret: " + read + "}\n  - {id: ci, role: write, secretFile: ci.token}\n  - {id: ops, role: admin, secret: " + admin + "}\n"
	if err := os.WriteFile(acl, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startAgent(t, "acl1", freePort(t), "--acl-file", acl, "--http-open-metrics")
	eventually(t, 15*time.Second, "the API answers", func() bool { return getJSONWith(p.http, "/v1/status", read, &map[string]any{}) == nil })
	if err := getJSON(p.http, "/v1/status", &map[string]any{}); err == nil || !strings.Contains(err.Error(), "HTTP 401") {
		t.Errorf("GET /v1/status without a token on loopback: %v, want HTTP 401", err)
	}
	if resp, err := http.Get("http://" + p.http + "/healthz"); err != nil || resp.StatusCode != 200 {
		t.Errorf("GET /healthz without a token and --http-open-metrics: %v %v, want 200", resp, err)
	} else {
		resp.Body.Close()
	}

	run := func(args ...string) (string, int) {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		out, err := exec.CommandContext(ctx, murmurBin(t), append(args, "--addr", p.http)...).CombinedOutput()
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		if err != nil {
			t.Fatalf("murmur %v: %v", args, err)
		}
		return string(out), 0
	}
	spec := filepath.Join(dir, "guarded.yaml")
	if err := os.WriteFile(spec, workloadYAML("guarded", 1), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, code := run("apply", "-f", spec, "--token", read); code != 2 || !strings.Contains(out, "needs a token with role write") {
		t.Errorf("apply with the read token: exit %d %s, want 2 naming role write", code, out)
	}
	if out, code := run("apply", "-f", spec, "--token", write); code != 0 {
		t.Fatalf("apply with the write token: exit %d %s", code, out)
	}
	stored, ok := storedIntentWith(t, p.http, read, "guarded")
	if !ok {
		t.Fatal("the applied intent is not listed")
	}
	if out, code := run("audit", "--token", write); code != 2 || !strings.Contains(out, "needs a token with role admin") {
		t.Errorf("audit with the write token: exit %d %s, want 2 naming role admin", code, out)
	}
	out, code := run("audit", "--token", admin)
	if code != 0 || !strings.Contains(out, "guarded@"+stored.Version) || !strings.Contains(out, "dash") || !strings.Contains(out, "403 forbidden") {
		t.Errorf("audit with the admin token: exit %d\n%s\nwant the refused write of dash and ci's write of guarded@%s", code, out, stored.Version)
	}
	if b, err := os.ReadFile(filepath.Join(p.dataDir, "audit.log")); err != nil || bytes.Count(b, []byte("\n")) != 2 || bytes.Contains(b, []byte("secret-0123456789")) {
		t.Errorf("audit.log = %q, %v; want 2 lines and no secret", b, err)
	}

	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("tokens:\n  - {id: ci, role: root, secret: "+write+"}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	outb, err := exec.CommandContext(ctx, murmurBin(t), "agent", "--acl-file", bad, "--data-dir", filepath.Join(dir, "bad-data"), "--bind", fmt.Sprintf("127.0.0.1:%d", freePort(t)), "--http", "127.0.0.1:0").CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(outb), `invalid --acl-file: `+bad+`: line 2: tokens[0].role: "root" is not a role`) {
		t.Errorf("agent with a bad ACL file: %v %s, want exit 2 naming the line, the field and the roles", err, outb)
	}
}

// storedIntentWith finds an intent of addr's store, read with token.
func storedIntentWith(t *testing.T, addr, token, name string) (storedIntent, bool) {
	t.Helper()
	var res struct {
		Intents []storedIntent `json:"intents"`
	}
	if err := getJSONWith(addr, "/v1/intents", token, &res); err != nil {
		t.Fatalf("list intents: %v", err)
	}
	for _, in := range res.Intents {
		if in.Name == name {
			return in, true
		}
	}
	return storedIntent{}, false
}

// getJSONWith is getJSON with a bearer token.
func getJSONWith(addr, path, token string, v any) error {
	req, err := http.NewRequest("GET", "http://"+addr+path, nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := (&http.Client{Timeout: 2 * time.Second}).Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		return fmt.Errorf("GET %s: HTTP %d", path, resp.StatusCode)
	}
	return json.NewDecoder(resp.Body).Decode(v)
}
