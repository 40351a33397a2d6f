package agent

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/murmur-edge/murmur/agent/api"
	"github.com/murmur-edge/murmur/agent/region"
	"github.com/murmur-edge/murmur/gossip/gossiptest"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

const (
	readSecret  = "read-secret-0123456789"
	writeSecret = "write-secret-0123456789"
	adminSecret = "admin-secret-0123456789"
)

// secretFiles is the readSecret of parseACL over a map, for tests.
func secretFiles(files map[string]string) func(string) ([]byte, error) {
	return func(name string) ([]byte, error) {
		s, ok := files[name]
		if !ok {
			return nil, fs.ErrNotExist
		}
		return []byte(s), nil
	}
}

func TestParseACL(t *testing.T) {
	files := secretFiles(map[string]string{"ci.token": writeSecret + "\n", "short.token": "abc\n"})
	good := `tokens:
  - {id: dashboard, role: read, secret: "` + readSecret + `"}
  - {id: ci, role: write, secretFile: ci.token}
  - {id: ops, role: admin, secret: "` + adminSecret + `"}
`
	got, err := parseACL([]byte(good), files)
	if err != nil {
		t.Fatalf("parseACL(good) = %v", err)
	}
	want := []apiToken{
		{id: "dashboard", role: roleRead, secret: []byte(readSecret)},
		{id: "ci", role: roleWrite, secret: []byte(writeSecret)},
		{id: "ops", role: roleAdmin, secret: []byte(adminSecret)},
	}
	if diff := cmp.Diff(want, got, cmp.AllowUnexported(apiToken{})); diff != "" {
		t.Errorf("parseACL(good) (-want +got):\n%s", diff)
	}

	tok := func(fields string) string { return "tokens:\n  - {" + fields + "}\n" }
	cases := []struct {
		name, file, want string
	}{
		{"empty", "", "is empty"},
		{"comment only", "# nothing\n", "is empty"},
		{"not yaml", "tokens: [", "not YAML"},
		{"two documents", tok("id: a, role: read, secret: "+readSecret) + "---\ntokens: []\n", "more than one YAML document"},
		{"not a mapping", "- a\n", "want \"tokens:\""},
		{"unknown top field", "token:\n  - {id: a}\n", `unknown field "token": the only field is tokens`},
		{"tokens twice", tok("id: a, role: read, secret: "+readSecret) + "tokens: []\n", "tokens appears twice"},
		{"no tokens", "tokens: []\n", "no token listed"},
		{"tokens not a list", "tokens: {id: a}\n", "no token listed"},
		{"token not a mapping", "tokens:\n  - ci\n", "tokens[0]: want a mapping"},
		{"unknown token field", tok("id: a, role: read, secrte: " + readSecret), `tokens[0]: unknown field "secrte" (line 2): use id, role, secret or secretFile`},
		{"field twice", tok("id: a, id: b, role: read, secret: " + readSecret), "tokens[0].id appears twice"},
		{"list value", tok("id: [a], role: read, secret: " + readSecret), "tokens[0].id (line 2): want a plain string"},
		{"missing id", tok("role: read, secret: " + readSecret), "tokens[0].id: missing"},
		{"bad id", tok("id: 'a b', role: read, secret: " + readSecret), `tokens[0].id: "a b" must be 1-64 letters`},
		{"missing role", tok("id: a, secret: " + readSecret), "tokens[0].role: missing: use read, write or admin"},
		{"bad role", tok("id: a, role: root, secret: " + readSecret), `tokens[0].role: "root" is not a role: use read, write or admin`},
		{"no secret", tok("id: a, role: read"), "tokens[0]: no secret: give secret"},
		{"both secrets", tok("id: a, role: read, secret: " + readSecret + ", secretFile: ci.token"), "tokens[0]: give secret or secretFile, not both"},
		{"short secret", tok("id: a, role: read, secret: abc"), "tokens[0].secret: the secret is 3 characters: use at least 16"},
		{"empty secret", tok("id: a, role: read, secret: ''"), "tokens[0].secret: the secret is 0 characters"},
		{"secret with a space", tok("id: a, role: read, secret: 'abcdefgh ijklmnopq'"), "tokens[0].secret: the secret holds a space"},
		{"short secret file", tok("id: a, role: read, secretFile: short.token"), "tokens[0].secretFile: the secret is 3 characters"},
		{"missing secret file", tok("id: a, role: read, secretFile: nope.token"), "tokens[0].secretFile: read nope.token"},
		{"duplicate id", tok("id: a, role: read, secret: "+readSecret) + "  - {id: a, role: admin, secret: " + adminSecret + "}\n", `line 3: tokens[1].id: "a" is listed twice`},
		{"duplicate secret", tok("id: a, role: read, secret: "+readSecret) + "  - {id: b, role: admin, secret: " + readSecret + "}\n", `tokens[1]: token "b" has the same secret as token "a"`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseACL([]byte(tc.file), files)
			if err == nil {
				t.Fatalf("parseACL accepted %q, want an error containing %q", tc.file, tc.want)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("parseACL error = %q, want it to contain %q", err, tc.want)
			}
			for _, s := range []string{readSecret, writeSecret, adminSecret} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("parseACL error %q shows a secret", err)
				}
			}
		})
	}
}

// FuzzParseACL: the ACL file is user input; parseACL never panics, and what it
// accepts has valid ids, roles and secrets.
func FuzzParseACL(f *testing.F) {
	f.Add([]byte("tokens:\n  - {id: ci, role: write, secret: " + writeSecret + "}\n"))
	f.Add([]byte("tokens:\n  - {id: ci, role: write, secretFile: ci.token}\n"))
	f.Add([]byte("tokens: &a [*a]\n"))
	f.Add([]byte("tokens:\n  - id: a\n    role: admin\n    secret: x\n"))
	files := secretFiles(map[string]string{"ci.token": writeSecret})
	f.Fuzz(func(t *testing.T, b []byte) {
		tokens, err := parseACL(b, files)
		if err != nil {
			return
		}
		for _, tok := range tokens {
			if !tokenIDPattern.MatchString(tok.id) || tok.role < roleRead || tok.role > roleAdmin || len(tok.secret) < minSecretLen {
				t.Fatalf("parseACL(%q) accepted an invalid token %+v", b, tok)
			}
		}
	})
}

func TestLoadTokens(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	write("ci.token", writeSecret+"\n")
	acl := write("acl.yaml", "tokens:\n  - {id: ci, role: write, secretFile: ci.token}\n")
	apiTok := write("api.token", adminSecret+"\n")
	clash := write("clash.yaml", "tokens:\n  - {id: api-token, role: read, secret: "+readSecret+"}\n")
	sameSecret := write("same.yaml", "tokens:\n  - {id: ro, role: read, secret: "+adminSecret+"}\n")
	bad := write("bad.yaml", "tokens:\n  - {id: ci, role: superuser, secret: "+readSecret+"}\n")

	cases := []struct {
		name      string
		cfg       Config
		wantIDs   []string // nil: no token set
		wantField string   // "" : no error
	}{
		{"loopback, no tokens: open", Config{HTTP: "127.0.0.1:7070"}, nil, ""},
		{"public, no tokens", Config{HTTP: "0.0.0.0:7070"}, nil, "http"},
		{"public, api token", Config{HTTP: "0.0.0.0:7070", APITokenFile: apiTok}, []string{"api-token"}, ""},
		{"loopback, acl file: enforced", Config{HTTP: "127.0.0.1:7070", ACLFile: acl}, []string{"ci"}, ""},
		{"both", Config{HTTP: "0.0.0.0:7070", ACLFile: acl, APITokenFile: apiTok}, []string{"ci", "api-token"}, ""},
		{"id clash with api token", Config{HTTP: "127.0.0.1:7070", ACLFile: clash, APITokenFile: apiTok}, nil, "acl-file"},
		{"secret clash with api token", Config{HTTP: "127.0.0.1:7070", ACLFile: sameSecret, APITokenFile: apiTok}, nil, "acl-file"},
		{"bad acl file", Config{HTTP: "127.0.0.1:7070", ACLFile: bad}, nil, "acl-file"},
		{"missing acl file", Config{HTTP: "127.0.0.1:7070", ACLFile: filepath.Join(dir, "nope.yaml")}, nil, "acl-file"},
		{"missing api token file", Config{HTTP: "127.0.0.1:7070", APITokenFile: filepath.Join(dir, "nope")}, nil, "api-token-file"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ts, err := loadTokens(tc.cfg)
			if tc.wantField != "" {
				var fe *FieldError
				if !errors.As(err, &fe) || fe.Field != tc.wantField {
					t.Fatalf("loadTokens = %v, want a FieldError on --%s", err, tc.wantField)
				}
				return
			}
			if err != nil {
				t.Fatalf("loadTokens = %v", err)
			}
			var ids []string
			if ts != nil {
				for _, tok := range ts.tokens {
					ids = append(ids, tok.id)
				}
			}
			if diff := cmp.Diff(tc.wantIDs, ids); diff != "" {
				t.Errorf("token ids (-want +got):\n%s", diff)
			}
		})
	}
	ts, err := loadTokens(Config{HTTP: "127.0.0.1:7070", APITokenFile: apiTok})
	if err != nil {
		t.Fatal(err)
	}
	if tok, ok := ts.lookup([]byte(adminSecret)); !ok || tok.role != roleAdmin {
		t.Errorf("the --api-token-file token is %+v (found %v), want role admin", tok, ok)
	}
}

func TestRequiredRole(t *testing.T) {
	cases := []struct {
		method, path string
		open         bool
		want         role
	}{
		{"GET", "/v1/status", false, roleRead},
		{"HEAD", "/v1/members", false, roleRead},
		{"POST", "/v1/intents", false, roleWrite},
		{"PUT", "/v1/intents", false, roleWrite},
		{"DELETE", "/v1/intents/vision", false, roleWrite},
		{"OPTIONS", "/v1/status", false, roleWrite},
		{"GET", "/v1/audit", false, roleAdmin},
		{"GET", "/v1/audit/", false, roleAdmin},
		{"GET", "/v1/keyring", false, roleAdmin},
		{"POST", "/v1/keyring/install", false, roleAdmin},
		{"DELETE", "/v1/keyring/k1", false, roleAdmin},
		{"GET", "/v1//audit", false, roleAdmin},
		{"GET", "/v1/x/../audit", false, roleAdmin},
		{"GET", "/v1/auditor", false, roleRead},
		{"GET", "/healthz", false, roleRead},
		{"GET", "/metrics", false, roleRead},
		{"GET", "/healthz", true, roleNone},
		{"HEAD", "/metrics", true, roleNone},
		{"POST", "/metrics", true, roleWrite},
		{"GET", "/v1/status", true, roleRead},
		{"GET", "/v1/audit", true, roleAdmin},
		{"GET", "/ui/", false, roleNone},
		{"HEAD", "/ui/app.js", false, roleNone},
		{"GET", "/ui", false, roleNone},
		{"GET", "/", false, roleNone},
		{"POST", "/ui/", false, roleWrite},
		{"GET", "/ui/../v1/members", false, roleRead},
		{"GET", "/ui/../v1/audit", false, roleAdmin},
		{"GET", "/uix", false, roleRead},
		{"GET", "//v1/members", false, roleRead},
		// An instance's output needs write, however the path is spelled.
		{"GET", "/v1/instances/web-1/logs", false, roleWrite},
		{"HEAD", "/v1/instances/web-1/logs", true, roleWrite},
		{"GET", "/v1/instances/web-1/logs/", false, roleWrite},
		{"GET", "/v1/instances/a/b/logs", false, roleWrite},
		{"GET", "/v1//instances/web-1/logs", false, roleWrite},
		{"GET", "/v1/x/../instances/web-1/logs", false, roleWrite},
		{"GET", "/v1/instances/web-1", false, roleRead},
		{"GET", "/v1/instances/logs", false, roleWrite},
	}
	for _, tc := range cases {
		if got := requiredRole(tc.method, tc.path, tc.open); got != tc.want {
			t.Errorf("requiredRole(%s %s, open metrics %v) = %s, want %s", tc.method, tc.path, tc.open, got, tc.want)
		}
	}
}

// testTokens has one token of each role.
func testTokens() *tokenSet {
	return &tokenSet{tokens: []apiToken{
		{id: "dash", role: roleRead, secret: []byte(readSecret)},
		{id: "ci", role: roleWrite, secret: []byte(writeSecret)},
		{id: "ops", role: roleAdmin, secret: []byte(adminSecret)},
	}}
}

func newTestAccess(t *testing.T, tokens *tokenSet, openMetrics bool, audit *auditLog) *access {
	t.Helper()
	now := func() time.Time { return time.Date(2030, 1, 2, 3, 4, 5, 6, time.FixedZone("x", 3600)) }
	z, err := newAccess(tokens, openMetrics, audit, prometheus.NewRegistry(), slog.New(slog.NewTextHandler(io.Discard, nil)), now)
	if err != nil {
		t.Fatal(err)
	}
	return z
}

// serve sends one request through z around a handler that answers 200 "ok".
func serve(z *access, method, path, auth string) *httptest.ResponseRecorder {
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		api.WriteJSON(w, http.StatusOK, map[string]string{"ok": "yes"})
	})
	req := httptest.NewRequest(method, path, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	w := httptest.NewRecorder()
	z.wrap(next).ServeHTTP(w, req)
	return w
}

func TestAccessRolesMethodsPaths(t *testing.T) {
	bearer := map[string]string{"none": "", "read": "Bearer " + readSecret, "write": "Bearer " + writeSecret, "admin": "Bearer " + adminSecret,
		"unknown": "Bearer not-a-token-of-this-agent", "basic": "Basic " + adminSecret, "lowercase": "bearer " + adminSecret}
	reqs := []struct{ method, path string }{
		{"GET", "/v1/status"}, {"POST", "/v1/intents"}, {"DELETE", "/v1/intents/vision"}, {"PUT", "/v1/intents"},
		{"GET", "/v1/audit"}, {"POST", "/v1/keyring/install"}, {"GET", "/metrics"}, {"GET", "/healthz"},
	}
	// want[token][i] is the status of reqs[i].
	want := map[string][]int{
		"none":      {401, 401, 401, 401, 401, 401, 401, 401},
		"unknown":   {401, 401, 401, 401, 401, 401, 401, 401},
		"basic":     {401, 401, 401, 401, 401, 401, 401, 401},
		"read":      {200, 403, 403, 403, 403, 403, 200, 200},
		"write":     {200, 200, 200, 200, 403, 403, 200, 200},
		"admin":     {200, 200, 200, 200, 200, 200, 200, 200},
		"lowercase": {200, 200, 200, 200, 200, 200, 200, 200},
	}
	z := newTestAccess(t, testTokens(), false, nil)
	for tok, codes := range want {
		for i, rq := range reqs {
			w := serve(z, rq.method, rq.path, bearer[tok])
			if w.Code != codes[i] {
				t.Errorf("token %s: %s %s = HTTP %d, want %d (%s)", tok, rq.method, rq.path, w.Code, codes[i], w.Body)
				continue
			}
			if w.Code == 200 {
				continue
			}
			var e api.Error
			if err := json.Unmarshal(w.Body.Bytes(), &e); err != nil || e.Error == "" {
				t.Errorf("token %s: %s %s answered %q, want the JSON error shape", tok, rq.method, rq.path, w.Body)
			}
			need := requiredRole(rq.method, rq.path, false).String()
			if !strings.Contains(e.Error, "needs a token with role "+need) {
				t.Errorf("token %s: %s %s: error %q does not name role %s", tok, rq.method, rq.path, e.Error, need)
			}
			if w.Code == 401 && (!strings.Contains(e.Error, "Authorization: Bearer") || w.Header().Get("WWW-Authenticate") == "") {
				t.Errorf("token %s: 401 %q without the header to send or WWW-Authenticate", tok, e.Error)
			}
			if strings.Contains(e.Error, "secret-0123456789") {
				t.Errorf("token %s: error %q shows a secret", tok, e.Error)
			}
		}
	}
	// 3 tokens x 8 requests refused before a token: 24, of which 3 x 6 needed read.
	if got := testutil.ToFloat64(z.refused.WithLabelValues("unauthenticated", "read")); got != 9 {
		t.Errorf("refused{unauthenticated,read} = %v, want 9", got)
	}
	// The read and the write token on /v1/audit and /v1/keyring.
	if got := testutil.ToFloat64(z.refused.WithLabelValues("forbidden", "admin")); got != 4 {
		t.Errorf("refused{forbidden,admin} = %v, want 4", got)
	}
}

func TestAccessOpenMetricsAndLoopback(t *testing.T) {
	open := newTestAccess(t, testTokens(), true, nil)
	for _, p := range []string{"/metrics", "/healthz"} {
		if w := serve(open, "GET", p, ""); w.Code != 200 {
			t.Errorf("--http-open-metrics: GET %s without a token = %d, want 200", p, w.Code)
		}
	}
	if w := serve(open, "GET", "/v1/status", ""); w.Code != 401 {
		t.Errorf("--http-open-metrics: GET /v1/status without a token = %d, want 401", w.Code)
	}
	// No tokens configured (a loopback API): everything is open, admin paths too.
	loop := newTestAccess(t, nil, false, nil)
	for _, rq := range []struct{ method, path string }{{"GET", "/v1/status"}, {"POST", "/v1/intents"}, {"GET", "/v1/audit"}, {"DELETE", "/v1/keyring/k"}, {"GET", "/metrics"}} {
		if w := serve(loop, rq.method, rq.path, ""); w.Code != 200 {
			t.Errorf("no tokens: %s %s = %d, want 200", rq.method, rq.path, w.Code)
		}
	}
}

// Writes are audited, refused ones too, with the token id; reads are not.
func TestAccessAuditsWrites(t *testing.T) {
	log, err := openAuditLog(t.TempDir(), 0)
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	z := newTestAccess(t, testTokens(), false, log)
	serve(z, "GET", "/v1/status", "Bearer "+readSecret)
	serve(z, "POST", "/v1/intents", "")
	serve(z, "POST", "/v1/intents", "Bearer "+readSecret)
	serve(z, "DELETE", "/v1/intents/vision", "Bearer "+writeSecret)
	serve(z, "GET", "/v1/audit", "Bearer "+writeSecret)
	got, _, err := log.Tail(10)
	if err != nil {
		t.Fatal(err)
	}
	when := time.Date(2030, 1, 2, 2, 4, 5, 6, time.UTC)
	want := []AuditEntry{
		{Time: when, Remote: "192.0.2.1:1234", Method: "POST", Path: "/v1/intents", Status: 401, Result: "unauthenticated",
			Error: "missing token: POST /v1/intents needs a token with role write: send 'Authorization: Bearer <token>' (CLI: --token or MURMUR_TOKEN)"},
		{Time: when, Token: "dash", Remote: "192.0.2.1:1234", Method: "POST", Path: "/v1/intents", Status: 403, Result: "forbidden",
			Error: `token "dash" has role read: POST /v1/intents needs a token with role write: use such a token or raise this one's role in --acl-file`},
		{Time: when, Token: "ci", Remote: "192.0.2.1:1234", Method: "DELETE", Path: "/v1/intents/vision", Intents: []AuditIntent{{Name: "vision"}}, Status: 200, Result: "ok"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("audit (-want +got):\n%s", diff)
	}
}

// newTokenAgent builds an agent on in-memory gossip and Raft transports with the
// tokens of testTokens in an ACL file, and serves its routes on a loopback test server
// (Run is not needed for the API's access control, audit and intent routes).
func newTokenAgent(t *testing.T, now func() time.Time) (*Agent, *httptest.Server) {
	t.Helper()
	dir := t.TempDir()
	acl := filepath.Join(dir, "acl.yaml")
	file := "tokens:\n  - {id: dash, role: read, secret: " + readSecret + "}\n  - {id: ci, role: write, secret: " + writeSecret + "}\n  - {id: ops, role: admin, secret: " + adminSecret + "}\n"
	if err := os.WriteFile(acl, []byte(file), 0o600); err != nil {
		t.Fatal(err)
	}
	raftTr, raftCtl := region.NewInmemNetwork().Add("raft-a1", "default")
	a, err := New(Config{
		Name: "a1", Bind: "127.0.0.1:0", HTTP: "127.0.0.1:0", DataDir: filepath.Join(dir, "data"), ACLFile: acl,
		Capacity: Resources{MilliCPU: 1000, MemoryBytes: 1 << 30},
	}, Deps{GossipTransport: gossiptest.NewNetwork().NewTransport("a1"), RaftTransport: raftTr, RaftControl: raftCtl, Now: now})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	srv := httptest.NewServer(a.routes())
	t.Cleanup(func() { srv.Close(); a.unlock() })
	return a, srv
}

// call sends one request with a bearer secret and decodes the JSON answer into out.
func call(t *testing.T, srv *httptest.Server, method, path, secret, body string, out any) int {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if secret != "" {
		req.Header.Set("Authorization", "Bearer "+secret)
	}
	resp, err := srv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: decode the answer: %v", method, path, err)
		}
	}
	return resp.StatusCode
}

// An agent with an ACL file audits a write with the intent and its version, a refused
// write too, and serves the audit to admin tokens only.
func TestAgentAuditsWritesForAdmins(t *testing.T) {
	now := time.Date(2030, 5, 6, 7, 8, 9, 0, time.UTC)
	_, srv := newTokenAgent(t, func() time.Time { return now })
	intent := "apiVersion: murmur/v1\nkind: Workload\nmetadata: {name: vision}\nspec:\n  replicas: 1\n  driver: exec\n  command: [/bin/sleep, '3600']\n"

	if code := call(t, srv, "POST", "/v1/intents", readSecret, intent, nil); code != http.StatusForbidden {
		t.Fatalf("POST /v1/intents with a read token = %d, want 403", code)
	}
	var applied struct {
		Intents []AuditIntent `json:"intents"`
	}
	if code := call(t, srv, "POST", "/v1/intents", writeSecret, intent, &applied); code != http.StatusOK || len(applied.Intents) != 1 || applied.Intents[0].Version == "" {
		t.Fatalf("POST /v1/intents with a write token = %d %+v, want 200 with the version", code, applied)
	}
	var deleted struct {
		Intents []AuditIntent `json:"intents"`
	}
	if code := call(t, srv, "DELETE", "/v1/intents/vision", adminSecret, "", &deleted); code != http.StatusOK || len(deleted.Intents) != 1 {
		t.Fatalf("DELETE /v1/intents/vision with an admin token = %d %+v", code, deleted)
	}

	var refusal api.Error
	for _, secret := range []string{"", readSecret, writeSecret} {
		if code := call(t, srv, "GET", "/v1/audit", secret, "", &refusal); code != http.StatusUnauthorized && code != http.StatusForbidden ||
			!strings.Contains(refusal.Error, "needs a token with role admin") {
			t.Errorf("GET /v1/audit with %q = %d %q, want 401/403 naming role admin", secret, code, refusal.Error)
		}
	}
	var audit AuditJSON
	if code := call(t, srv, "GET", "/v1/audit?limit=10", adminSecret, "", &audit); code != http.StatusOK {
		t.Fatalf("GET /v1/audit with an admin token = %d", code)
	}
	for _, e := range audit.Entries {
		if !strings.HasPrefix(e.Remote, "127.0.0.1:") {
			t.Errorf("remote = %q, want the test client's 127.0.0.1:port", e.Remote)
		}
	}
	want := []AuditEntry{
		{Time: now, Token: "dash", Method: "POST", Path: "/v1/intents", Status: 403, Result: "forbidden",
			Error: `token "dash" has role read: POST /v1/intents needs a token with role write: use such a token or raise this one's role in --acl-file`},
		{Time: now, Token: "ci", Method: "POST", Path: "/v1/intents", Status: 200, Result: "ok", Intents: applied.Intents},
		{Time: now, Token: "ops", Method: "DELETE", Path: "/v1/intents/vision", Status: 200, Result: "ok", Intents: deleted.Intents},
	}
	if diff := cmp.Diff(want, audit.Entries, cmpopts.IgnoreFields(AuditEntry{}, "Remote")); diff != "" {
		t.Errorf("GET /v1/audit (-want +got):\n%s", diff)
	}
	if got := applied.Intents[0]; got.Name != "vision" || got.Kind != "Workload" || got.Result != "created" {
		t.Errorf("the audited apply is %+v, want vision, Workload, created", got)
	}
	if deleted.Intents[0].Version == applied.Intents[0].Version {
		t.Errorf("the delete's version %s is the apply's: want the tombstone's", deleted.Intents[0].Version)
	}
	if code := call(t, srv, "GET", "/v1/audit?limit=0", adminSecret, "", &refusal); code != http.StatusBadRequest {
		t.Errorf("GET /v1/audit?limit=0 = %d, want 400", code)
	}
}
