package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/spf13/cobra"
)

const (
	cliKeyOld = "b2xkLWtleS0xNi1ieXRlcw==" // 16 bytes
	cliKeyNew = "WlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlpaWlo="
)

// fakeKeyringAgent answers the keyring endpoints with canned answers and records the
// requests.
type fakeKeyringAgent struct {
	mu   sync.Mutex
	reqs []string
	ans  map[string]struct {
		code int
		body string
	}
}

func (f *fakeKeyringAgent) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	f.mu.Lock()
	f.reqs = append(f.reqs, r.Method+" "+r.URL.String()+" "+string(b))
	a := f.ans[r.URL.Path]
	f.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(a.code)
	_, _ = w.Write([]byte(a.body))
}

func runKeyring(t *testing.T, addr string, args ...string) (string, error) {
	t.Helper()
	root := &cobra.Command{Use: "murmur", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(newKeyringCmd(&clientFlags{}))
	var out bytes.Buffer
	root.SetOut(&out)
	root.SetErr(&out)
	root.SetArgs(append(args, "--addr", addr))
	err := root.ExecuteContext(context.Background())
	return out.String(), err
}

func TestKeyringCLI(t *testing.T) {
	f := &fakeKeyringAgent{ans: map[string]struct {
		code int
		body string
	}{
		"/v1/keyring": {200, `{"op":"list","keys":[{"key":"` + cliKeyNew + `","nodes":5,"primary":5},{"key":"` + cliKeyOld + `","nodes":5,"primary":0}],
			"nodes":5,"answered":5,"failed":0,"no_answer":[],"errors":{},"down":["n9"]}`},
		"/v1/keyring/install": {502, `{"error":"keyring operation failed on some nodes: install failed on 2 of 5 nodes","details":[{"field":"n2","message":"persist the keyring: disk full"},{"field":"n4","message":"did not answer in time"}],
			"op":"install","keys":[{"key":"` + cliKeyNew + `","nodes":3,"primary":0}],"nodes":5,"answered":4,"failed":2,"no_answer":["n4"],"errors":{"n2":"persist the keyring: disk full"},"down":[]}`},
		"/v1/keyring/use": {409, `{"error":"refused to use the key: it would cut off 1 node(s): n2 (does not have the key)","details":[{"field":"n2","message":"does not have the key"}],
			"op":"use","keys":[],"nodes":5,"answered":5,"failed":0,"no_answer":[],"errors":{},"down":[]}`},
		"/v1/keyring/remove": {200, `{"op":"remove","keys":[{"key":"` + cliKeyNew + `","nodes":5,"primary":5}],"nodes":5,"answered":5,"failed":0,"no_answer":[],"errors":{},"down":[]}`},
	}}
	srv := httptest.NewServer(f)
	defer srv.Close()

	out, err := runKeyring(t, srv.URL, "keyring", "list", "--timeout", "7s")
	if err != nil {
		t.Fatalf("list: %v\n%s", err, out)
	}
	for _, want := range []string{"KEY", cliKeyNew + "  5/5    5/5", cliKeyOld + "                      5/5    0/5", "5 of 5 nodes answered", "not asked (dead or left): n9"} {
		if !strings.Contains(out, want) {
			t.Errorf("list output lacks %q:\n%s", want, out)
		}
	}
	if f.reqs[0] != "GET /v1/keyring?timeout=7s " {
		t.Errorf("list sent %q", f.reqs[0])
	}

	out, err = runKeyring(t, srv.URL, "keyring", "install", cliKeyNew)
	var ue usageError
	if err == nil || errors.As(err, &ue) || !strings.Contains(err.Error(), "n2: persist the keyring: disk full") || !strings.Contains(err.Error(), "HTTP 502") {
		t.Fatalf("install with a partial failure: err %v, want exit 1 naming n2", err)
	}
	if !strings.Contains(out, "4 of 5 nodes answered, 2 failed or did not answer") || !strings.Contains(out, cliKeyNew+"  3/4") {
		t.Errorf("install output:\n%s", out)
	}
	if want := `POST /v1/keyring/install?timeout=5s {"key":"` + cliKeyNew + `"}`; f.reqs[1] != want {
		t.Errorf("install sent %q, want %q", f.reqs[1], want)
	}

	if _, err = runKeyring(t, srv.URL, "keyring", "use", cliKeyNew); !errors.As(err, &ue) || !strings.Contains(err.Error(), "n2: does not have the key") {
		t.Errorf("refused use: err %v, want exit 2 naming n2", err)
	}
	out, err = runKeyring(t, srv.URL, "keyring", "remove", cliKeyOld)
	if err != nil || !strings.Contains(out, "removed the key from 5 of 5 nodes") {
		t.Errorf("remove: %v\n%s", err, out)
	}

	// -o json prints the agent's answer, and still fails on a partial failure.
	out, err = runKeyring(t, srv.URL, "keyring", "install", cliKeyNew, "-o", "json")
	var ans keyringAnswer
	if err == nil || json.Unmarshal([]byte(out), &ans) != nil || ans.Failed != 2 {
		t.Errorf("install -o json: err %v, output %s", err, out)
	}

	n := len(f.reqs)
	for _, args := range [][]string{
		{"keyring", "install", "not base64!"},
		{"keyring", "use", "c2hvcnQ="},
		{"keyring", "remove"},
		{"keyring", "list", "--timeout", "0s"},
	} {
		if _, err := runKeyring(t, srv.URL, args...); err == nil {
			t.Errorf("%v: no error", args)
		} else if !errors.As(err, &ue) && !strings.Contains(err.Error(), "arg") {
			t.Errorf("%v: %v, want a usage error (exit 2)", args, err)
		}
	}
	if len(f.reqs) != n {
		t.Errorf("invalid input reached the agent: %q", f.reqs[n:])
	}
}
