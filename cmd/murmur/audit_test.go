package main

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/google/go-cmp/cmp"
)

const auditAnswer = `{"entries":[
 {"time":"2030-01-02T03:04:05.123456789Z","token":"","remote":"127.0.0.1:50000","method":"POST","path":"/v1/intents","status":401,"result":"unauthenticated","error":"missing token"},
 {"time":"2030-01-02T03:04:06Z","token":"ci","remote":"10.0.0.9:40000","method":"POST","path":"/v1/intents","intents":[{"name":"vision","kind":"Workload","version":"v7","result":"created"},{"name":"rules","version":"v8"}],"status":200,"result":"ok"},
 {"time":"2030-01-02T03:04:07Z","token":"ops","remote":"10.0.0.9:40001","method":"DELETE","path":"/v1/intents/x\u001b[31m\ty","intents":[{"name":"x\u001b[31m\ty"}],"status":404,"result":"rejected","error":"intent not found"}
],"skipped":1}`

// runCLI runs the murmur command line against an API answering GET /v1/audit.
func runCLI(t *testing.T, args ...string) (string, string, *http.Request, error) {
	t.Helper()
	var got *http.Request
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r
		w.Header().Set("Content-Type", "application/json")
		w.Write([]byte(auditAnswer))
	}))
	defer srv.Close()
	root := newRootCmd()
	var out, errOut bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&errOut)
	root.SetArgs(append(args, "--addr", srv.URL))
	err := root.Execute()
	return out.String(), errOut.String(), got, err
}

func TestAuditCmd(t *testing.T) {
	out, stderr, req, err := runCLI(t, "audit", "--limit", "5", "--token", "admin-secret-0123456789")
	if err != nil {
		t.Fatal(err)
	}
	if req.URL.Path != "/v1/audit" || req.URL.RawQuery != "limit=5" || req.Header.Get("Authorization") != "Bearer admin-secret-0123456789" {
		t.Errorf("request %s?%s with Authorization %q, want /v1/audit?limit=5 with the token", req.URL.Path, req.URL.RawQuery, req.Header.Get("Authorization"))
	}
	want := "" +
		"TIME                  TOKEN  REMOTE           METHOD  PATH                      INTENT              RESULT\n" +
		"2030-01-02T03:04:05Z  -      127.0.0.1:50000  POST    /v1/intents               -                   401 unauthenticated: missing token\n" +
		"2030-01-02T03:04:06Z  ci     10.0.0.9:40000   POST    /v1/intents               vision@v7,rules@v8  200 ok\n" +
		`2030-01-02T03:04:07Z  ops    10.0.0.9:40001   DELETE  /v1/intents/x\x1b[31m\ty  x\x1b[31m\ty        404 rejected: intent not found` + "\n"
	if diff := cmp.Diff(want, out); diff != "" {
		t.Errorf("audit table (-want +got):\n%s", diff)
	}
	if stderr == "" {
		t.Error("no warning for the skipped line")
	}

	out, _, req, err = runCLI(t, "audit", "-o", "json")
	if err != nil || req.URL.RawQuery != "limit=100" || !bytes.Contains([]byte(out), []byte(`"token": "ci"`)) {
		t.Errorf("audit -o json: %v, query %q, output %s", err, req.URL.RawQuery, out)
	}
	for _, args := range [][]string{{"audit", "--limit", "0"}, {"audit", "--limit", "1001"}, {"audit", "-o", "yaml"}} {
		_, _, _, err := runCLI(t, args...)
		var ue usageError
		if !errors.As(err, &ue) {
			t.Errorf("%v: %v, want a usage error (exit 2)", args, err)
		}
	}
}

// --acl-file and --http-open-metrics come from the config file and MURMUR_* like
// every agent flag.
func TestAgentAccessSettings(t *testing.T) {
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "agent.yaml")
	if err := os.WriteFile(cfgPath, []byte("acl-file: /etc/murmur/acl.yaml\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fs := newAgentCmd().Flags()
	if err := fs.Parse([]string{"--config", cfgPath, "--data-dir", dir}); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"MURMUR_HTTP_OPEN_METRICS": "true"}
	if err := layerSettings(fs, func(k string) (string, bool) { v, ok := env[k]; return v, ok }); err != nil {
		t.Fatal(err)
	}
	cfg, _, err := agentConfig(fs, os.Stderr)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.ACLFile != "/etc/murmur/acl.yaml" || !cfg.HTTPOpenMetrics {
		t.Errorf("acl-file %q, http-open-metrics %v; want the file's path and the environment's true", cfg.ACLFile, cfg.HTTPOpenMetrics)
	}
}
