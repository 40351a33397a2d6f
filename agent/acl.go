package agent

import (
	"bytes"
	"crypto/subtle"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/murmur-edge/murmur/agent/api"
	"github.com/prometheus/client_golang/prometheus"
	"go.yaml.in/yaml/v3"
)

// API access control.
//
// Tokens carry a role: read < write < admin, each including the ones below it. The
// rule, applied by access.wrap around every route:
//
//   - no tokens configured (only allowed when --http is loopback): every request is
//     open, and writes are audited with an empty token id;
//   - tokens configured (always when --http is beyond loopback): every request needs
//     one. GET and HEAD need read, every other method needs write, and anything under
//     /v1/audit or /v1/keyring needs admin whatever the method. An instance's output
//     (GET /v1/instances/{id}/logs) needs write: workloads print what they were given,
//     secrets included, and a read token is what a wall dashboard holds. /healthz and
//     /metrics are open only with --http-open-metrics. GET and HEAD of the dashboard's
//     static files (/ui/...) and of / (a redirect to /ui/) are open: they hold no
//     data, and every API call the page makes needs a token.
//
// 401 answers a missing or unknown token, 403 a token whose role is too small.

// role is what an API token may do.
type role int

const (
	roleNone  role = iota // nothing needed: the route is open
	roleRead              // GET and HEAD
	roleWrite             // every other method
	roleAdmin             // /v1/audit, /v1/keyring
)

func (r role) String() string {
	switch r {
	case roleRead:
		return "read"
	case roleWrite:
		return "write"
	case roleAdmin:
		return "admin"
	}
	return "none"
}

func parseRole(s string) (role, error) {
	switch s {
	case "read":
		return roleRead, nil
	case "write":
		return roleWrite, nil
	case "admin":
		return roleAdmin, nil
	}
	return roleNone, fmt.Errorf("%q is not a role: use read, write or admin", s)
}

// apiToken is one token an agent accepts. The secret is never logged or audited.
type apiToken struct {
	id     string
	role   role
	secret []byte
}

// tokenSet is the immutable set of tokens of an agent.
type tokenSet struct{ tokens []apiToken }

// lookup finds the token whose secret is secret. It compares against every token in
// constant time, so the answer time says nothing about which secret came close.
func (s *tokenSet) lookup(secret []byte) (apiToken, bool) {
	var found apiToken
	ok := 0
	for _, t := range s.tokens {
		if subtle.ConstantTimeCompare(secret, t.secret) == 1 {
			found, ok = t, 1
		}
	}
	return found, ok == 1
}

// apiTokenID is the id of the token of --api-token-file, an admin token.
const apiTokenID = "api-token"

// minSecretLen is the shortest secret accepted (16 characters, e.g. openssl rand -hex 32
// gives 64).
const minSecretLen = 16

var tokenIDPattern = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,62}[A-Za-z0-9])?$`)

// loadTokens reads the tokens of --acl-file and --api-token-file and applies the
// loopback rule. It returns nil when no token is configured, which only a loopback API
// may run with. Problems are *FieldError naming the flag.
func loadTokens(cfg Config) (*tokenSet, error) {
	var tokens []apiToken
	if cfg.ACLFile != "" {
		ts, err := loadACLFile(cfg.ACLFile)
		if err != nil {
			return nil, &FieldError{"acl-file", err}
		}
		tokens = ts
	}
	if cfg.APITokenFile != "" {
		secret, err := readToken(cfg.APITokenFile)
		if err != nil {
			return nil, &FieldError{"api-token-file", err}
		}
		for _, t := range tokens {
			if t.id == apiTokenID {
				return nil, &FieldError{"acl-file", fmt.Errorf("token id %q is taken by --api-token-file: rename the token in %s", apiTokenID, cfg.ACLFile)}
			}
			if subtle.ConstantTimeCompare(t.secret, secret) == 1 {
				return nil, &FieldError{"acl-file", fmt.Errorf("token %q has the secret of --api-token-file: give each token its own secret", t.id)}
			}
		}
		tokens = append(tokens, apiToken{id: apiTokenID, role: roleAdmin, secret: secret})
	}
	if len(tokens) == 0 {
		if !isLoopback(cfg.HTTP) {
			return nil, &FieldError{"http", fmt.Errorf("%s listens beyond loopback: give --acl-file or --api-token-file so requests need a bearer token, or bind the API to 127.0.0.1", cfg.HTTP)}
		}
		return nil, nil
	}
	return &tokenSet{tokens: tokens}, nil
}

// loadACLFile reads an ACL file; a relative secretFile is relative to the ACL file's
// directory.
func loadACLFile(file string) ([]apiToken, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("read: %w", err)
	}
	dir := filepath.Dir(file)
	readSecret := func(name string) ([]byte, error) {
		if !filepath.IsAbs(name) {
			name = filepath.Join(dir, name)
		}
		return os.ReadFile(name)
	}
	tokens, err := parseACL(b, readSecret)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", file, err)
	}
	return tokens, nil
}

// aclFileHelp shows the expected shape in errors.
const aclFileHelp = `want "tokens:" and a list of {id, role, secret or secretFile}`

// parseACL decodes an ACL file strictly: unknown or repeated fields, repeated ids or
// secrets, short secrets and unknown roles are errors naming the line, the field and
// the fix. readSecret reads a secretFile. The error never contains a secret.
func parseACL(data []byte, readSecret func(name string) ([]byte, error)) ([]apiToken, error) {
	root, err := aclRoot(data)
	if err != nil {
		return nil, err
	}
	var list *yaml.Node
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		if k.Value != "tokens" {
			return nil, fmt.Errorf("line %d: unknown field %q: the only field is tokens", k.Line, k.Value)
		}
		if list != nil {
			return nil, fmt.Errorf("line %d: tokens appears twice: keep one list", k.Line)
		}
		list = v
	}
	if list == nil || list.Kind != yaml.SequenceNode || len(list.Content) == 0 {
		return nil, fmt.Errorf("tokens: no token listed: %s, or leave --acl-file out", aclFileHelp)
	}
	tokens := make([]apiToken, 0, len(list.Content))
	for i, n := range list.Content {
		t, err := parseACLToken(n, readSecret)
		if err != nil {
			return nil, fmt.Errorf("line %d: tokens[%d]%w", n.Line, i, err)
		}
		if err := checkUnique(tokens, t); err != nil {
			return nil, fmt.Errorf("line %d: tokens[%d]%w", n.Line, i, err)
		}
		tokens = append(tokens, t)
	}
	return tokens, nil
}

// aclRoot returns the top mapping of the single YAML document in data.
func aclRoot(data []byte) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("is empty: %s", aclFileHelp)
		}
		return nil, fmt.Errorf("not YAML: %w", err)
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); !errors.Is(err, io.EOF) {
		return nil, errors.New("holds more than one YAML document: keep one")
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, fmt.Errorf("line %d: %s", doc.Line, aclFileHelp)
	}
	return doc.Content[0], nil
}

// parseACLToken decodes one entry of tokens. Its errors start with ".field: " or ": "
// so that the caller can prefix tokens[i].
func parseACLToken(n *yaml.Node, readSecret func(string) ([]byte, error)) (apiToken, error) {
	fields, err := aclTokenFields(n)
	if err != nil {
		return apiToken{}, err
	}
	val := func(k string) string {
		if v := fields[k]; v != nil {
			return v.Value
		}
		return ""
	}
	t := apiToken{id: val("id")}
	if fields["id"] == nil {
		return t, errors.New(".id: missing: give each token an id for the logs and the audit, e.g. id: ci")
	}
	if !tokenIDPattern.MatchString(t.id) {
		return t, fmt.Errorf(".id: %q must be 1-64 letters, digits, '.', '_' or '-', starting and ending with a letter or digit", t.id)
	}
	if fields["role"] == nil {
		return t, errors.New(".role: missing: use read, write or admin")
	}
	if t.role, err = parseRole(val("role")); err != nil {
		return t, fmt.Errorf(".role: %w", err)
	}
	t.secret, err = tokenSecret(fields["secret"] != nil, val("secret"), val("secretFile"), readSecret)
	return t, err
}

// aclTokenFields returns the fields of one token mapping by name: known ones only, each
// once, each a plain string.
func aclTokenFields(n *yaml.Node) (map[string]*yaml.Node, error) {
	if n.Kind != yaml.MappingNode {
		return nil, errors.New(": want a mapping {id, role, secret or secretFile}")
	}
	fields := map[string]*yaml.Node{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		switch k.Value {
		case "id", "role", "secret", "secretFile":
		default:
			return nil, fmt.Errorf(": unknown field %q (line %d): use id, role, secret or secretFile", k.Value, k.Line)
		}
		if _, dup := fields[k.Value]; dup {
			return nil, fmt.Errorf(".%s appears twice (line %d): keep one", k.Value, k.Line)
		}
		if v.Kind != yaml.ScalarNode {
			return nil, fmt.Errorf(".%s (line %d): want a plain string", k.Value, v.Line)
		}
		fields[k.Value] = v
	}
	return fields, nil
}

// tokenSecret checks the secret given inline or reads it from its file.
func tokenSecret(inline bool, secret, file string, readSecret func(string) ([]byte, error)) ([]byte, error) {
	field := ".secret"
	switch {
	case inline && file != "":
		return nil, errors.New(": give secret or secretFile, not both")
	case !inline && file == "":
		return nil, errors.New(": no secret: give secret (at least 16 characters, e.g. openssl rand -hex 32) or secretFile")
	case file != "":
		b, err := readSecret(file)
		if err != nil {
			return nil, fmt.Errorf(".secretFile: read %s: %w", file, err)
		}
		secret, field = strings.TrimSpace(string(b)), ".secretFile"
	}
	if len(secret) < minSecretLen {
		return nil, fmt.Errorf("%s: the secret is %d characters: use at least %d (e.g. openssl rand -hex 32)", field, len(secret), minSecretLen)
	}
	for _, c := range []byte(secret) {
		if c <= ' ' || c > '~' {
			return nil, fmt.Errorf("%s: the secret holds a space or a character outside printable ASCII: it travels in an HTTP header; use e.g. openssl rand -hex 32", field)
		}
	}
	return []byte(secret), nil
}

// checkUnique refuses a token whose id or secret an earlier one has.
func checkUnique(prev []apiToken, t apiToken) error {
	for _, p := range prev {
		if p.id == t.id {
			return fmt.Errorf(".id: %q is listed twice: give each token its own id", t.id)
		}
		if subtle.ConstantTimeCompare(p.secret, t.secret) == 1 {
			return fmt.Errorf(": token %q has the same secret as token %q: give each token its own secret", t.id, p.id)
		}
	}
	return nil
}

// requiredRole is the role a request needs. Both the path as sent and its cleaned
// form are checked, so that no spelling of an admin path needs less than admin.
func requiredRole(method, p string, openMetrics bool) role {
	for _, q := range []string{p, path.Clean("/" + p)} {
		if underPath(q, "/v1/audit") || underPath(q, "/v1/keyring") {
			return roleAdmin
		}
	}
	read := method == http.MethodGet || method == http.MethodHead
	for _, q := range []string{p, path.Clean("/" + p)} {
		if read && isLogsPath(q) {
			return roleWrite
		}
	}
	switch {
	case read && openMetrics && (p == "/healthz" || p == "/metrics"):
		return roleNone
	case read && (p == "/" || underPath(p, "/ui") && underPath(path.Clean("/"+p), "/ui")):
		return roleNone
	case read:
		return roleRead
	}
	return roleWrite
}

func underPath(p, prefix string) bool { return p == prefix || strings.HasPrefix(p, prefix+"/") }

// isLogsPath reports whether p asks for an instance's output: under /v1/instances/
// and ending in a segment "logs" (however the id in between is spelled).
func isLogsPath(p string) bool {
	return strings.HasPrefix(p, "/v1/instances/") && (strings.HasSuffix(p, "/logs") || strings.HasSuffix(p, "/logs/"))
}

// isWrite reports whether a request changes state and so is audited.
func isWrite(method string) bool { return method != http.MethodGet && method != http.MethodHead }

// access enforces the token rule and audits writes. Immutable after newAccess; safe
// for concurrent use.
type access struct {
	tokens      *tokenSet // nil: no tokens configured, every request is open
	openMetrics bool
	audit       *auditLog // nil: writes are not recorded
	log         *slog.Logger
	now         func() time.Time
	refused     *prometheus.CounterVec
	auditErrors prometheus.Counter
}

func newAccess(tokens *tokenSet, openMetrics bool, audit *auditLog, reg prometheus.Registerer, log *slog.Logger, now func() time.Time) (*access, error) {
	z := &access{
		tokens: tokens, openMetrics: openMetrics, audit: audit, log: log, now: now,
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "murmur_http_requests_refused_total",
			Help: "API requests refused by access control, by reason (unauthenticated: 401, forbidden: 403) and the role the request needed.",
		}, []string{"reason", "role"}),
		auditErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "murmur_audit_write_errors_total",
			Help: "Audit entries that could not be written to <data-dir>/audit.log (the agent log has the cause).",
		}),
	}
	for _, c := range []prometheus.Collector{z.refused, z.auditErrors} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("register access metrics: %w", err)
		}
	}
	return z, nil
}

// wrap puts access control and the audit around next.
func (z *access) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !isWrite(r.Method) {
			if _, ok := z.check(w, r); ok {
				next.ServeHTTP(w, r)
			}
			return
		}
		rec := &recorder{ResponseWriter: w}
		id, ok := z.check(rec, r)
		if ok {
			next.ServeHTTP(rec, r)
		}
		z.record(r, id, rec)
	})
}

// check authorizes r. When it refuses, it has answered 401 or 403 and returns false.
// The id is the token's ("" for an open request).
func (z *access) check(w http.ResponseWriter, r *http.Request) (string, bool) {
	need := requiredRole(r.Method, r.URL.Path, z.openMetrics)
	if z.tokens == nil || need == roleNone {
		return "", true
	}
	what := fmt.Sprintf("%s %s needs a token with role %s", r.Method, r.URL.Path, need)
	secret, sent := bearer(r.Header.Get("Authorization"))
	tok, known := z.tokens.lookup(secret)
	switch {
	case !sent || !known:
		z.refused.WithLabelValues("unauthenticated", need.String()).Inc()
		msg := "missing token: " + what + ": send 'Authorization: Bearer <token>' (CLI: --token or MURMUR_TOKEN)"
		if sent {
			msg = "unknown token: " + what + ": send 'Authorization: Bearer <token>' with a token of the agent's --acl-file or --api-token-file"
		}
		z.log.Debug("API request refused", "reason", "unauthenticated", "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
		w.Header().Set("WWW-Authenticate", `Bearer realm="murmur"`)
		api.WriteError(w, http.StatusUnauthorized, msg)
		return "", false
	case tok.role < need:
		z.refused.WithLabelValues("forbidden", need.String()).Inc()
		z.log.Debug("API request refused", "reason", "forbidden", "token", tok.id, "method", r.Method, "path", r.URL.Path, "remote", r.RemoteAddr)
		api.WriteError(w, http.StatusForbidden, fmt.Sprintf("token %q has role %s: %s: use such a token or raise this one's role in --acl-file", tok.id, tok.role, what))
		return tok.id, false
	}
	return tok.id, true
}

// bearer extracts the token of an "Authorization: Bearer <token>" header (the scheme
// is case-insensitive, RFC 7235).
func bearer(h string) ([]byte, bool) {
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return nil, false
	}
	tok = strings.TrimSpace(tok)
	return []byte(tok), tok != ""
}

// record appends the audit entry of a write. A failure is logged and counted: the
// request has been answered already.
func (z *access) record(r *http.Request, id string, rec *recorder) {
	if z.audit == nil {
		return
	}
	e := newAuditEntry(z.now(), id, r, rec.statusCode(), rec.body.Bytes())
	if err := z.audit.Append(e); err != nil {
		z.auditErrors.Inc()
		z.log.Error("write the audit log", "err", err, "method", e.Method, "path", e.Path, "token", e.Token)
	}
}

// maxAuditCapture bounds the part of a write's answer the audit keeps to read the
// intents and the error from.
const maxAuditCapture = 256 << 10

// recorder is the ResponseWriter of an audited request: it passes everything through
// and keeps the status and the start of the body.
type recorder struct {
	http.ResponseWriter
	status int
	body   bytes.Buffer
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(b []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if room := maxAuditCapture - r.body.Len(); room > 0 {
		r.body.Write(b[:min(len(b), room)])
	}
	return r.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection's writer.
func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func (r *recorder) statusCode() int {
	if r.status == 0 {
		return http.StatusOK
	}
	return r.status
}
