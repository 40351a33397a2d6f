package ui

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/murmur-edge/murmur/agent/api"
)

func get(t *testing.T, h http.Handler, method, path string, header ...string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w
}

func TestServesFilesWithTheirContentTypes(t *testing.T) {
	h := New()
	cases := []struct {
		path, ctype, contains string
	}{
		{"/ui/", "text/html; charset=utf-8", `<script src="app.js" defer></script>`},
		{"/ui/index.html", "text/html; charset=utf-8", `<link rel="stylesheet" href="style.css">`},
		{"/ui/app.js", "text/javascript; charset=utf-8", "use strict"},
		{"/ui/style.css", "text/css; charset=utf-8", ":root"},
	}
	for _, tc := range cases {
		w := get(t, h, "GET", tc.path)
		if w.Code != http.StatusOK {
			t.Errorf("GET %s: HTTP %d, want 200", tc.path, w.Code)
			continue
		}
		if got := w.Header().Get("Content-Type"); got != tc.ctype {
			t.Errorf("GET %s: Content-Type %q, want %q", tc.path, got, tc.ctype)
		}
		for k, want := range map[string]string{"X-Content-Type-Options": "nosniff", "Content-Security-Policy": csp, "Content-Encoding": ""} {
			if got := w.Header().Get(k); got != want {
				t.Errorf("GET %s: %s %q, want %q", tc.path, k, got, want)
			}
		}
		if !strings.Contains(w.Body.String(), tc.contains) {
			t.Errorf("GET %s: the body does not contain %q", tc.path, tc.contains)
		}
		if cl := w.Header().Get("Content-Length"); cl != "" && cl != strconv.Itoa(w.Body.Len()) {
			t.Errorf("GET %s: Content-Length %s for %d bytes", tc.path, cl, w.Body.Len())
		}
	}
}

func TestGzipETagAndHead(t *testing.T) {
	h := New()
	plain := get(t, h, "GET", "/ui/app.js")
	zipped := get(t, h, "GET", "/ui/app.js", "Accept-Encoding", "gzip, deflate, br")
	if zipped.Header().Get("Content-Encoding") != "gzip" || zipped.Body.Len() >= plain.Body.Len() {
		t.Fatalf("Accept-Encoding gzip: Content-Encoding %q, %d bytes against %d plain; want a smaller gzip body",
			zipped.Header().Get("Content-Encoding"), zipped.Body.Len(), plain.Body.Len())
	}
	zr, err := gzip.NewReader(zipped.Body)
	if err != nil {
		t.Fatal(err)
	}
	unzipped, err := io.ReadAll(zr)
	if err != nil || !bytes.Equal(unzipped, plain.Body.Bytes()) {
		t.Errorf("the gzip body does not decompress to the file (err %v)", err)
	}
	if got := get(t, h, "GET", "/ui/app.js", "Accept-Encoding", "gzip;q=0, identity"); got.Header().Get("Content-Encoding") != "" {
		t.Errorf("gzip;q=0: Content-Encoding %q, want none", got.Header().Get("Content-Encoding"))
	}
	for _, w := range []*httptest.ResponseRecorder{plain, zipped} {
		etag := w.Header().Get("ETag")
		enc := w.Header().Get("Content-Encoding")
		again := get(t, h, "GET", "/ui/app.js", "If-None-Match", etag, "Accept-Encoding", enc)
		if again.Code != http.StatusNotModified || again.Body.Len() != 0 {
			t.Errorf("If-None-Match %s (encoding %q): HTTP %d with %d bytes, want 304 and none", etag, enc, again.Code, again.Body.Len())
		}
	}
	if plain.Header().Get("ETag") == zipped.Header().Get("ETag") {
		t.Errorf("the plain and the gzip body share the ETag %s", plain.Header().Get("ETag"))
	}
	head := get(t, h, "HEAD", "/ui/")
	if head.Code != http.StatusOK || head.Body.Len() != 0 || head.Header().Get("Content-Length") == "" {
		t.Errorf("HEAD /ui/: HTTP %d, %d bytes, Content-Length %q; want 200, no body, the length", head.Code, head.Body.Len(), head.Header().Get("Content-Length"))
	}
}

func TestUnknownPathsAndMethods(t *testing.T) {
	h := New()
	for _, p := range []string{"/ui/nope", "/ui/index.htm", "/ui/app.js/", "/ui/static/app.js", "/ui/./app.js", "/ui/%2e%2e/ui.go", "/ui/ui.go", "/ui/doc.go", "/other"} {
		w := get(t, h, "GET", p)
		var e api.Error
		if w.Code != http.StatusNotFound || json.Unmarshal(w.Body.Bytes(), &e) != nil || e.Error == "" {
			t.Errorf("GET %s: HTTP %d %q, want 404 with the error envelope", p, w.Code, w.Body.String())
		}
	}
	if w := get(t, h, "POST", "/ui/"); w.Code != http.StatusMethodNotAllowed || w.Header().Get("Allow") != "GET, HEAD" {
		t.Errorf("POST /ui/: HTTP %d Allow %q, want 405 and GET, HEAD", w.Code, w.Header().Get("Allow"))
	}
}

// The dashboard works offline: no embedded file names a resource outside the agent,
// and index.html references only files that are served.
func TestAssetsReferenceNothingOutside(t *testing.T) {
	h := New()
	external := []*regexp.Regexp{
		regexp.MustCompile(`(?i)https?:`),                         // any absolute http(s) URL
		regexp.MustCompile(`(?i)(src|href|action)\s*=\s*["']?//`), // protocol-relative
		regexp.MustCompile(`(?i)url\(\s*["']?(//|[a-z]+:)`),       // CSS url() to elsewhere
		regexp.MustCompile(`(?i)@import`),
		regexp.MustCompile(`(?i)\bimport\s*\(|\bimportScripts\b|new\s+(WebSocket|EventSource|Worker)\b`),
	}
	files := h.Files()
	if !slices.Contains(files, "index.html") || !slices.Contains(files, "app.js") || !slices.Contains(files, "style.css") {
		t.Fatalf("embedded files %v, want index.html, app.js and style.css", files)
	}
	for _, f := range files {
		body := get(t, h, "GET", Prefix+f).Body.String()
		for _, re := range external {
			if loc := re.FindStringIndex(body); loc != nil {
				t.Errorf("%s references something outside the agent: %q matches %s", f, body[max(0, loc[0]-30):min(len(body), loc[1]+30)], re)
			}
		}
	}
	index := get(t, h, "GET", "/ui/").Body.String()
	for _, m := range regexp.MustCompile(`(?:src|href)="([^"#]+)"`).FindAllStringSubmatch(index, -1) {
		ref := m[1]
		if ref == "data:," { // the empty favicon: no request
			continue
		}
		if w := get(t, h, "GET", Prefix+ref); w.Code != http.StatusOK {
			t.Errorf("index.html references %s: GET %s%s is HTTP %d", ref, Prefix, ref, w.Code)
		}
	}
}

// The page renders data as text only: node names and intents are written by whoever
// runs a node or pushes an intent.
func TestScriptWritesNoHTML(t *testing.T) {
	js := get(t, New(), "GET", "/ui/app.js").Body.String()
	html := regexp.MustCompile(`\.(innerHTML|outerHTML)\s*[+]?=|insertAdjacentHTML|document\.write|\beval\s*\(|new\s+Function\b|createContextualFragment|srcdoc|DOMParser`)
	for _, m := range html.FindAllString(js, -1) {
		t.Errorf("app.js uses %q: build elements with el() and text nodes", m)
	}
}
