package main

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// An API that listens beyond loopback takes requests only with the bearer token of
// --api-token-file (an admin token); a refused write stores nothing. Reads need the
// token too. (The agent binds 0.0.0.0; the test talks to it on 127.0.0.1 only.)
func TestRealWritesNeedTokenBeyondLoopback(t *testing.T) {
	dir := t.TempDir()
	tokenFile := filepath.Join(dir, "token")
	token := "0123456789abcdef0123456789abcdef"
	if err := os.WriteFile(tokenFile, []byte(token+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	httpPort := freePort(t)
	startAgent(t, "auth1", freePort(t), "--http", fmt.Sprintf("0.0.0.0:%d", httpPort), "--api-token-file", tokenFile)
	addr := fmt.Sprintf("127.0.0.1:%d", httpPort)
	eventually(t, 15*time.Second, "the API answers", func() bool {
		var st map[string]any
		return getJSONWith(addr, "/v1/status", token, &st) == nil
	})
	if err := getJSON(addr, "/v1/status", &map[string]any{}); err == nil || !strings.Contains(err.Error(), "HTTP 401") {
		t.Errorf("GET /v1/status without the token: %v, want HTTP 401", err)
	}
	post := func(auth string) (int, string) {
		req, _ := http.NewRequest("POST", "http://"+addr+"/v1/intents", bytes.NewReader(workloadYAML("guarded", 1)))
		req.Header.Set("Content-Type", "application/yaml")
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var b bytes.Buffer
		_, _ = b.ReadFrom(resp.Body)
		return resp.StatusCode, b.String()
	}
	for _, auth := range []string{"", "Bearer wrong-token-wrong-token!!", "Basic " + token, "Bearer " + token + "x"} {
		code, body := post(auth)
		if code != http.StatusUnauthorized || !strings.Contains(body, "Authorization: Bearer") {
			t.Errorf("POST with Authorization %q: HTTP %d %s, want 401 naming the header", auth, code, body)
		}
		if _, ok := storedIntentWith(t, addr, token, "guarded"); ok {
			t.Fatalf("a refused write (Authorization %q) stored the intent", auth)
		}
	}
	req, _ := http.NewRequest("DELETE", "http://"+addr+"/v1/intents/guarded", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("DELETE without a token: HTTP %d, want 401", resp.StatusCode)
	}
	if code, body := post("Bearer " + token); code != http.StatusOK && code != http.StatusCreated {
		t.Fatalf("POST with the token: HTTP %d %s", code, body)
	}
	if _, ok := storedIntentWith(t, addr, token, "guarded"); !ok {
		t.Error("the authorised write is not listed")
	}
}
