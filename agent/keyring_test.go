package agent

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/memberlist"
	"github.com/murmur-edge/murmur/gossip"
	"github.com/murmur-edge/murmur/gossip/gossiptest"
)

var (
	testKeyA = []byte("0123456789abcdef")
	testKeyB = bytes.Repeat([]byte{0x42}, 32)
)

func b64(k []byte) string { return base64.StdEncoding.EncodeToString(k) }

// logBuffer is a logger whose output a test reads.
func logBuffer() (*slog.Logger, *bytes.Buffer) {
	var buf bytes.Buffer
	return slog.New(slog.NewTextHandler(&buf, nil)), &buf
}

func TestKeyringLoad(t *testing.T) {
	fileOf := func(keys ...[]byte) string {
		d := keyringDisk{}
		for _, k := range keys {
			d.Keys = append(d.Keys, b64(k))
		}
		b, _ := json.Marshal(d)
		return string(b)
	}
	cases := []struct {
		name     string
		file     string // "" = no file
		encrypt  []byte
		want     [][]byte // nil = encryption off
		warn     bool
		wantFile bool
	}{
		{"no file, no key: encryption off", "", nil, nil, false, false},
		{"no file, --encrypt makes one", "", testKeyA, [][]byte{testKeyA}, false, true},
		{"file alone", fileOf(testKeyB, testKeyA), nil, [][]byte{testKeyB, testKeyA}, false, true},
		{"file holds --encrypt as a secondary key", fileOf(testKeyB, testKeyA), testKeyA, [][]byte{testKeyB, testKeyA}, false, true},
		{"file wins over another --encrypt", fileOf(testKeyB), testKeyA, [][]byte{testKeyB}, true, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, KeyringFile)
			if tc.file != "" {
				if err := os.WriteFile(path, []byte(tc.file), 0o600); err != nil {
					t.Fatal(err)
				}
			}
			log, buf := logBuffer()
			ring, err := loadKeyring(dir, tc.encrypt, log)
			if err != nil {
				t.Fatalf("loadKeyring: %v", err)
			}
			if tc.want == nil {
				if ring != nil {
					t.Fatalf("ring = %q, want none (encryption off)", ring.GetKeys())
				}
			} else if ring == nil || !slices.EqualFunc(ring.GetKeys(), tc.want, bytes.Equal) {
				t.Fatalf("ring keys = %v, want %q", ring, tc.want)
			}
			if got := strings.Contains(buf.String(), "the keyring wins"); got != tc.warn {
				t.Errorf("warning logged: %v, want %v; log: %s", got, tc.warn, buf)
			}
			st, err := os.Stat(path)
			if (err == nil) != tc.wantFile {
				t.Fatalf("keyring file exists: %v, want %v", err == nil, tc.wantFile)
			}
			if tc.wantFile && tc.file == "" {
				if st.Mode().Perm() != 0o600 {
					t.Errorf("keyring file mode %v, want 0600", st.Mode().Perm())
				}
				b, _ := os.ReadFile(path)
				keys, err := parseKeyring(b)
				if err != nil || !slices.EqualFunc(keys, tc.want, bytes.Equal) {
					t.Errorf("the file made from --encrypt holds %q (%v), want %q", keys, err, tc.want)
				}
			}
		})
	}
}

func TestKeyringFileRefused(t *testing.T) {
	cases := map[string]struct{ file, want string }{
		"not json":   {"keys: [abc]", "not the JSON expected"},
		"empty list": {`{"keys": []}`, "keys: the list is empty"},
		"unknown":    {`{"keys": ["` + b64(testKeyA) + `"], "primary": 0}`, "unknown field"},
		"bad base64": {`{"keys": ["***"]}`, "keys[0]: not base64"},
		"short key":  {`{"keys": ["` + b64(testKeyA) + `", "c2hvcnQ="]}`, "keys[1]: bad gossip key: 5 bytes"},
		"twice":      {`{"keys": ["` + b64(testKeyA) + `", "` + b64(testKeyA) + `"]}`, "keys[1]: listed twice"},
		"trailing":   {`{"keys": ["` + b64(testKeyA) + `"]} {}`, "data after the JSON object"},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := os.WriteFile(filepath.Join(dir, KeyringFile), []byte(tc.file), 0o600); err != nil {
				t.Fatal(err)
			}
			_, err := loadKeyring(dir, testKeyA, slog.New(slog.DiscardHandler))
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), KeyringFile) || !strings.Contains(err.Error(), "--encrypt") {
				t.Fatalf("err = %v, want one naming the file, %q and the fix", err, tc.want)
			}
		})
	}
}

// TestKeyringAgentNew: New builds the ring from the data dir before gossip, passes
// that very object to gossip, and refuses a corrupt keyring as a --data-dir problem
// (exit 2).
func TestKeyringAgentNew(t *testing.T) {
	newAgent := func(dir string, key []byte) (*Agent, error) {
		net := gossiptest.NewNetwork()
		return New(Config{
			Name: "n1", Bind: "127.0.0.1:0", HTTP: "127.0.0.1:0", DataDir: dir, EncryptKey: key,
			Capacity: Resources{MilliCPU: 1000, MemoryBytes: 1 << 30},
		}, Deps{GossipTransport: net.NewTransport("n1")})
	}
	dir := t.TempDir()
	a, err := newAgent(dir, testKeyA)
	if err != nil {
		t.Fatal(err)
	}
	if a.keyring == nil || !bytes.Equal(a.keyring.GetPrimaryKey(), testKeyA) || !slices.EqualFunc(a.gossip.Keys(), [][]byte{testKeyA}, bytes.Equal) {
		t.Fatalf("agent keyring %v, gossip keys %q, want the --encrypt key in both", a.keyring, a.gossip.Keys())
	}
	a.unlock()

	// A rotated keyring on disk wins over the key the agent was first started with.
	if err := writeKeyring(dir, [][]byte{testKeyB, testKeyA}); err != nil {
		t.Fatal(err)
	}
	if a, err = newAgent(dir, testKeyA); err != nil {
		t.Fatal(err)
	}
	if got := a.gossip.Keys(); !slices.EqualFunc(got, [][]byte{testKeyB, testKeyA}, bytes.Equal) {
		t.Errorf("gossip keys after a restart = %q, want the file's, primary first", got)
	}
	a.unlock()

	if err := os.WriteFile(filepath.Join(dir, KeyringFile), []byte("{"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = newAgent(dir, testKeyA)
	var fe *FieldError
	if !errors.As(err, &fe) || fe.Field != "data-dir" || !strings.Contains(err.Error(), KeyringFile) {
		t.Fatalf("New with a corrupt keyring: %v, want an invalid --data-dir naming %s", err, KeyringFile)
	}

	// Without a key and without a file, gossip runs unencrypted and no file appears.
	plain := t.TempDir()
	if a, err = newAgent(plain, nil); err != nil {
		t.Fatal(err)
	}
	defer a.unlock()
	if a.keyring != nil || a.gossip.Keys() != nil {
		t.Errorf("an agent without --encrypt has keys %q", a.gossip.Keys())
	}
	if _, err := os.Stat(filepath.Join(plain, KeyringFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("an agent without --encrypt wrote a keyring file (%v)", err)
	}
}

// FuzzKeyringFile: keyring.json is edited by hand (a node that was down during a
// rotation gets a copy); parseKeyring must never panic and accept only usable rings.
func FuzzKeyringFile(f *testing.F) {
	f.Add([]byte(`{"keys": ["` + b64(testKeyA) + `", "` + b64(testKeyB) + `"]}`))
	f.Add([]byte(`{"keys": []}`))
	f.Add([]byte(`{"keys": ["c2hvcnQ="]}`))
	f.Add([]byte(`[]`))
	f.Fuzz(func(t *testing.T, b []byte) {
		keys, err := parseKeyring(b)
		if err != nil {
			return
		}
		if len(keys) == 0 || len(keys) > gossip.MaxKeys {
			t.Fatalf("accepted %d keys", len(keys))
		}
		if _, err := memberlist.NewKeyring(keys[1:], keys[0]); err != nil {
			t.Fatalf("accepted keys memberlist refuses: %v", err)
		}
	})
}

// TestKeyringHTTP drives the endpoints of one agent of a 3-node in-process fleet.
func TestKeyringHTTP(t *testing.T) {
	net := gossiptest.NewNetwork()
	var nodes []*gossiptest.Node
	for i := 0; i < 3; i++ {
		var seeds []string
		if i > 0 {
			seeds = []string{nodes[0].Addr()}
		}
		nodes = append(nodes, gossiptest.Start(t, net, fmt.Sprintf("h%d", i), func(c *gossip.Config) { c.SecretKey = testKeyA }, seeds...))
	}
	for _, nd := range nodes {
		gossiptest.Eventually(t, 20*time.Second, nd.Name+" sees 3 alive", func() bool { return gossiptest.CountStatus(nd.Gossip, gossip.StatusAlive) == 3 })
	}
	mux := http.NewServeMux()
	(&Agent{gossip: nodes[1].Gossip}).registerKeyring(mux)
	call := func(method, path, body string) (int, KeyringJSON) {
		t.Helper()
		rec := httptest.NewRecorder()
		mux.ServeHTTP(rec, httptest.NewRequest(method, path, strings.NewReader(body)))
		var out KeyringJSON
		if err := json.Unmarshal(rec.Body.Bytes(), &out); err != nil {
			t.Fatalf("%s %s: answer %q: %v", method, path, rec.Body, err)
		}
		return rec.Code, out
	}
	keyBody := func(k []byte) string { return `{"key":"` + b64(k) + `"}` }

	code, out := call("GET", "/v1/keyring", "")
	if code != 200 || out.Nodes != 3 || out.Answered != 3 || len(out.Keys) != 1 || out.Keys[0] != (KeyJSON{b64(testKeyA), 3, 3}) || len(out.Results) != 3 {
		t.Fatalf("list: %d %+v", code, out)
	}
	for _, tc := range []struct{ path, body, field string }{
		{"/v1/keyring/install", `{"key":"***"}`, "key"},
		{"/v1/keyring/install", `{"key":"c2hvcnQ="}`, "key"},
		{"/v1/keyring/install", `{}`, "key"},
		{"/v1/keyring/use", `{"kee":"x"}`, "body"},
		{"/v1/keyring/install?timeout=forever", keyBody(testKeyB), "timeout"},
	} {
		if code, out := call("POST", tc.path, tc.body); code != 400 || len(out.Details) != 1 || out.Details[0].Field != tc.field {
			t.Errorf("POST %s %s: %d %+v, want 400 naming %s", tc.path, tc.body, code, out, tc.field)
		}
	}
	if code, out := call("POST", "/v1/keyring/rotate", keyBody(testKeyB)); code != 404 || !strings.Contains(out.Error, "install") {
		t.Errorf("POST /v1/keyring/rotate: %d %+v, want 404 listing the operations", code, out)
	}
	if code, out := call("POST", "/v1/keyring/use", keyBody(testKeyB)); code != 409 || len(out.Details) != 3 || !strings.Contains(out.Error, "does not have the key") {
		t.Errorf("use before install: %d %+v, want 409 naming the 3 nodes", code, out)
	}
	if code, out := call("POST", "/v1/keyring/install", keyBody(testKeyB)); code != 200 || out.Failed != 0 || len(out.Keys) != 2 {
		t.Fatalf("install: %d %+v", code, out)
	}
	if code, out := call("POST", "/v1/keyring/remove", keyBody(testKeyA)); code != 409 || len(out.Details) != 3 {
		t.Errorf("remove of the primary key: %d %+v, want 409 naming the 3 nodes", code, out)
	}
	if code, out := call("POST", "/v1/keyring/use?timeout=10s", keyBody(testKeyB)); code != 200 || out.Keys[0] != (KeyJSON{b64(testKeyB), 3, 3}) {
		t.Fatalf("use: %d %+v", code, out)
	}
	code, out = call("POST", "/v1/keyring/remove", keyBody(testKeyA))
	if code != 200 || len(out.Keys) != 1 || out.Keys[0] != (KeyJSON{b64(testKeyB), 3, 3}) {
		t.Fatalf("remove: %d %+v", code, out)
	}
	for _, r := range out.Results {
		if r.Result != "ok" || r.Primary != b64(testKeyB) || r.Keys != 1 {
			t.Errorf("result of %s: %+v, want ok with only the new key", r.Node, r)
		}
	}

	// A partial failure is a 502 naming the node; encryption off is a 409 naming the node.
	mute := gossiptest.StartWithSetup(t, net, "mute", func(c *gossip.Config) { c.SecretKey = testKeyB }, func(g *gossip.Gossip) {
		g.Register(gossip.KindKeyring, func(string, []byte) {}, nil) // never answers
	}, nodes[0].Addr())
	gossiptest.Eventually(t, 20*time.Second, "h1 sees mute", func() bool { return gossiptest.StatusOf(nodes[1].Gossip, mute.Name) == gossip.StatusAlive })
	code, out = call("GET", "/v1/keyring?timeout=300ms", "")
	if code != 502 || out.Failed != 1 || out.Answered != 3 || !slices.Equal(out.NoAnswer, []string{"mute"}) || len(out.Details) != 1 || out.Details[0].Field != "mute" {
		t.Errorf("list with a member that never answers: %d %+v, want 502 naming mute", code, out)
	}
	plain := gossiptest.Start(t, gossiptest.NewNetwork(), "plain", nil)
	mux = http.NewServeMux()
	(&Agent{gossip: plain.Gossip}).registerKeyring(mux)
	if code, out := call("POST", "/v1/keyring/install", keyBody(testKeyB)); code != 409 || !strings.Contains(out.Error, "gossip encryption is off on plain: start agents with --encrypt") {
		t.Errorf("install without encryption: %d %+v", code, out)
	}
}
