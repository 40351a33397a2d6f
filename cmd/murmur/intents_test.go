package main

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/murmur-edge/murmur/agent/intents"
	"github.com/murmur-edge/murmur/policy"
	"github.com/spf13/cobra"
)

// testAgent serves one node's intent API.
func testAgent(t *testing.T, trustKeyFiles ...string) *httptest.Server {
	t.Helper()
	svc, err := intents.New(intents.Config{DataDir: t.TempDir(), NodeName: "n1", TrustKeyFiles: trustKeyFiles, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	mux := http.NewServeMux()
	svc.Register(mux)
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	return srv
}

func run(t *testing.T, cf *clientFlags, addr string, args ...string) (string, error) {
	t.Helper()
	args = append(args, "--addr", addr)
	root := &cobra.Command{Use: "murmur", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(newIntentCommands(cf)...)
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetIn(strings.NewReader(""))
	root.SetArgs(args)
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func TestApplyGetDelete(t *testing.T) {
	srv := testAgent(t)
	cf := &clientFlags{}
	dir := filepath.Join("..", "..", "testdata", "intents")
	out, err := run(t, cf, srv.URL, "apply", "-f", dir)
	if err != nil {
		t.Fatalf("apply dir: %v\n%s", err, out)
	}
	for _, want := range []string{"workload/vision created", "policy/site-rules created", "workload/logger created", "workload/json-example created"} {
		if !strings.Contains(out, want) {
			t.Errorf("apply output lacks %q:\n%s", want, out)
		}
	}
	out, err = run(t, cf, srv.URL, "apply", "-f", filepath.Join(dir, "workload-exec.yaml"), "--wait")
	if err != nil || !strings.Contains(out, "workload/vision unchanged") {
		t.Errorf("re-apply: %v\n%s", err, out)
	}
	out, err = run(t, cf, srv.URL, "get", "intents")
	if err != nil || !strings.Contains(out, "NAME") || !strings.Contains(out, "vision") || !strings.Contains(out, "site-rules") {
		t.Errorf("get intents: %v\n%s", err, out)
	}
	out, err = run(t, cf, srv.URL, "get", "intent", "vision")
	if err != nil {
		t.Fatalf("get intent: %v", err)
	}
	if ins, err := policy.Parse([]byte(out)); err != nil || ins[0].Name() != "vision" {
		t.Errorf("get intent yaml does not parse back: %v\n%s", err, out)
	}
	out, err = run(t, cf, srv.URL, "get", "intent", "vision", "-o", "json")
	if err != nil || !strings.Contains(out, `"intent": {`) {
		t.Errorf("get intent -o json: %v\n%s", err, out)
	}
	out, err = run(t, cf, srv.URL, "delete", "vision")
	if err != nil || !strings.Contains(out, "workload/vision deleted") {
		t.Errorf("delete: %v\n%s", err, out)
	}
	_, err = run(t, cf, srv.URL, "get", "intent", "vision")
	if err == nil || !strings.Contains(err.Error(), "was deleted") || !strings.Contains(err.Error(), "HTTP 404") {
		t.Errorf("get deleted: %v", err)
	}
}

func TestApplyLocalErrors(t *testing.T) {
	srv := testAgent(t)
	cf := &clientFlags{}
	bad := filepath.Join("..", "..", "testdata", "intents", "bad", "many-problems.yaml")
	_, err := run(t, cf, srv.URL, "apply", "-f", bad)
	var ue usageError
	if !errors.As(err, &ue) || !strings.Contains(err.Error(), "many-problems.yaml: spec.colour: unknown field") {
		t.Errorf("bad file: %v", err)
	}
	if _, err := run(t, cf, srv.URL, "apply", "-f", bad, "-o", "yaml"); !errors.As(err, &ue) || !strings.Contains(err.Error(), "invalid --output") {
		t.Errorf("apply -o yaml: %v", err)
	}
	if _, err := run(t, cf, srv.URL, "apply"); !errors.As(err, &ue) {
		t.Errorf("no -f: %v", err)
	}
	if _, err := run(t, cf, srv.URL, "apply", "-f", "/does/not/exist"); !errors.As(err, &ue) {
		t.Errorf("missing file: %v", err)
	}
	// Admission is the server's: a policy there rejects, and the details are printed.
	pol := filepath.Join(t.TempDir(), "p.yaml")
	os.WriteFile(pol, []byte("apiVersion: murmur/v1\nkind: Policy\nmetadata: {name: p}\nspec: {admission: {allowedDrivers: [docker]}}\n"), 0o600)
	if _, err := run(t, cf, srv.URL, "apply", "-f", pol); err != nil {
		t.Fatal(err)
	}
	_, err = run(t, cf, srv.URL, "apply", "-f", filepath.Join("..", "..", "testdata", "intents", "workload-exec.yaml"))
	if err == nil || !strings.Contains(err.Error(), "HTTP 403") || !strings.Contains(err.Error(), "spec.driver:") {
		t.Errorf("admission error: %v", err)
	}
}

func TestSigningKeygenAndSignedApply(t *testing.T) {
	dir := t.TempDir()
	prefix := filepath.Join(dir, "ops")
	keyPath := prefix + ".key"
	var out bytes.Buffer
	if err := writeSigningKeys(prefix, bytes.NewReader(bytes.Repeat([]byte{3}, 32)), &out); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(keyPath); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("private key mode: %v %v", st.Mode(), err)
	}
	if err := writeSigningKeys(prefix, bytes.NewReader(bytes.Repeat([]byte{3}, 32)), &out); err == nil {
		t.Error("keygen overwrote an existing key")
	}
	srv := testAgent(t, prefix+".pub")
	cf := &clientFlags{}
	file := filepath.Join("..", "..", "testdata", "intents", "workload-exec.yaml")
	if _, err := run(t, cf, srv.URL, "apply", "-f", file); err == nil || !strings.Contains(err.Error(), "not signed") {
		t.Errorf("unsigned apply to a trusting agent: %v", err)
	}
	if o, err := run(t, cf, srv.URL, "apply", "-f", file, "--sign-key", keyPath); err != nil || !strings.Contains(o, "created") || !strings.Contains(o, "@key:") {
		t.Errorf("signed apply: %v %s", err, o)
	}
	// Again: the CLI signs the version the node holds, so the request is the stored
	// record itself and the node answers unchanged.
	if o, err := run(t, cf, srv.URL, "apply", "-f", file, "--sign-key", keyPath); err != nil || !strings.Contains(o, "unchanged") {
		t.Errorf("signed re-apply: %v %s", err, o)
	}
	if _, err := run(t, cf, srv.URL, "delete", "vision"); err == nil || !strings.Contains(err.Error(), "HTTP 403") {
		t.Errorf("unsigned delete: %v", err)
	}
	if o, err := run(t, cf, srv.URL, "delete", "vision", "--sign-key", keyPath); err != nil || !strings.Contains(o, "deleted") {
		t.Errorf("signed delete: %v %s", err, o)
	}
	// The public key file works as a trust key, the private one does not.
	if _, err := os.ReadFile(prefix + ".pub"); err != nil {
		t.Fatal(err)
	}
	if _, err := run(t, cf, srv.URL, "apply", "-f", file, "--sign-key", prefix+".pub"); err == nil {
		t.Error("a public key accepted as --sign-key")
	}
}

// TestSignedApplyVersions: the CLI signs above the version the node holds (live or
// deleted), even when this machine's clock is behind it, and the node refuses a replay
// of an older signed request.
func TestSignedApplyVersions(t *testing.T) {
	dir := t.TempDir()
	prefix := filepath.Join(dir, "ops")
	if err := writeSigningKeys(prefix, bytes.NewReader(bytes.Repeat([]byte{5}, 32)), io.Discard); err != nil {
		t.Fatal(err)
	}
	priv, err := readSigningKey(prefix + ".key")
	if err != nil {
		t.Fatal(err)
	}
	srv := testAgent(t, prefix+".pub")
	cf := &clientFlags{Addr: srv.URL, Output: "json"}
	ctx := context.Background()
	file := filepath.Join(dir, "w.yaml")
	write := func(cmd string) {
		os.WriteFile(file, []byte("apiVersion: murmur/v1\nkind: Workload\nmetadata: {name: w}\nspec: {driver: exec, command: ["+cmd+"]}\n"), 0o600)
	}
	apply := func(now time.Time) (intentResult, error) {
		t.Helper()
		var out bytes.Buffer
		if err := applyIntents(ctx, cf, applyOptions{files: []string{file}, signKey: prefix + ".key", now: now}, &out); err != nil {
			return intentResult{}, err
		}
		var r struct{ Intents []intentResult }
		if err := json.Unmarshal(out.Bytes(), &r); err != nil || len(r.Intents) != 1 {
			t.Fatalf("answer %s: %v", out.Bytes(), err)
		}
		return r.Intents[0], nil
	}
	version := func(r intentResult) policy.Version {
		t.Helper()
		v, err := policy.ParseVersion(r.Version)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	write("/bin/a")
	first, err := apply(time.Now())
	if err != nil || first.Result != "created" {
		t.Fatalf("first: %+v %v", first, err)
	}
	v1 := version(first)
	if want := policy.SignerNode(policy.KeyID(priv.Public().(ed25519.PublicKey))); v1.Node != want {
		t.Errorf("signed version %s; want node %s", v1, want)
	}
	// Keep the first request as an attacker would have captured it.
	ins, _ := policy.Parse([]byte("apiVersion: murmur/v1\nkind: Workload\nmetadata: {name: w}\nspec: {driver: exec, command: [/bin/a]}\n"))
	if err := policy.SignIntent(&ins[0], v1, priv); err != nil {
		t.Fatal(err)
	}
	captured, _ := encodeApplyBody(ins)

	// This machine's clock an hour behind the version the node holds: still above it.
	write("/bin/b")
	second, err := apply(time.Now().Add(-time.Hour))
	if err != nil || second.Result != "updated" || !v1.Less(version(second)) {
		t.Fatalf("with a clock behind: %+v %v; want updated above %s", second, err, v1)
	}
	// The captured first request, replayed: refused, and the node keeps the second.
	if _, err := intentRequest(ctx, cf, http.MethodPost, "/v1/intents", nil, captured, nil); err == nil || !strings.Contains(err.Error(), "HTTP 409") || !strings.Contains(err.Error(), "sign the intent again") {
		t.Errorf("replayed first request: %v; want HTTP 409", err)
	}
	// Deleted (above the held version), then applied again (above the tombstone).
	var out bytes.Buffer
	if err := deleteIntent(ctx, cf, "w", false, time.Second, prefix+".key", time.Now().Add(-time.Hour), &out); err != nil {
		t.Fatalf("signed delete with a clock behind: %v", err)
	}
	var del struct{ Intents []intentResult }
	json.Unmarshal(out.Bytes(), &del)
	if len(del.Intents) != 1 || !version(second).Less(version(del.Intents[0])) {
		t.Fatalf("delete: %s; want a version above %s", out.Bytes(), second.Version)
	}
	third, err := apply(time.Now().Add(-time.Hour))
	if err != nil || third.Result != "created" || !version(del.Intents[0]).Less(version(third)) {
		t.Errorf("after the delete: %+v %v; want created above %s", third, err, del.Intents[0].Version)
	}
	if err := deleteIntent(ctx, cf, "nope", false, time.Second, prefix+".key", time.Now(), io.Discard); err == nil || !strings.Contains(err.Error(), "HTTP 404") {
		t.Errorf("signed delete of an unknown name: %v", err)
	}
}
