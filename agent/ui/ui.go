package ui

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"embed"
	"encoding/hex"
	"io/fs"
	"net/http"
	"path"
	"strconv"
	"strings"

	"github.com/murmur-edge/murmur/agent/api"
)

// Prefix is the path the dashboard is served under.
const Prefix = "/ui/"

//go:embed static
var static embed.FS

// contentTypes maps the extensions of the embedded files to their Content-Type. A
// file with another extension is a programmer error (New panics).
var contentTypes = map[string]string{
	".html": "text/html; charset=utf-8",
	".css":  "text/css; charset=utf-8",
	".js":   "text/javascript; charset=utf-8",
}

// csp allows this agent as the only source of scripts, styles, images and
// connections, no inline script or style markup, no frames and no form posts.
const csp = "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; " +
	"base-uri 'none'; form-action 'none'; frame-ancestors 'none'"

// asset is one embedded file, ready to serve.
type asset struct {
	ctype    string
	body     []byte
	gz       []byte // gzip of body; nil when it would not be smaller
	etag     string // of body
	etagGzip string // of gz
}

// Handler serves the embedded dashboard under Prefix. It is immutable after New
// and safe for concurrent use.
type Handler struct {
	assets map[string]*asset // path below Prefix ("" is index.html) → file
}

// New reads the embedded files, compresses them once and returns the handler.
func New() *Handler {
	h := &Handler{assets: map[string]*asset{}}
	err := fs.WalkDir(static, "static", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		body, err := static.ReadFile(p)
		if err != nil {
			return err
		}
		ctype, ok := contentTypes[path.Ext(p)]
		if !ok {
			panic("ui: embedded file " + p + " has no content type: add its extension to contentTypes")
		}
		sum := sha256.Sum256(body)
		a := &asset{ctype: ctype, body: body, etag: `"` + hex.EncodeToString(sum[:8]) + `"`}
		var buf bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression) // the level is valid
		_, _ = zw.Write(body)                                    // a bytes.Buffer does not fail
		_ = zw.Close()
		if buf.Len() < len(body) {
			a.gz, a.etagGzip = buf.Bytes(), `"`+hex.EncodeToString(sum[:8])+`-gz"`
		}
		h.assets[strings.TrimPrefix(p, "static/")] = a
		return nil
	})
	if err != nil {
		panic("ui: read the embedded files: " + err.Error()) // they are compiled in
	}
	h.assets[""] = h.assets["index.html"]
	return h
}

// Files lists the paths of the embedded files below Prefix, for tests.
func (h *Handler) Files() []string {
	var out []string
	for p := range h.assets {
		if p != "" {
			out = append(out, p)
		}
	}
	return out
}

// ServeHTTP serves GET and HEAD of Prefix + a file name; anything else below Prefix
// is a 404 (the views are chosen by the URL's fragment, which never reaches the
// server).
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		api.WriteError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed on the dashboard: use GET")
		return
	}
	name, ok := strings.CutPrefix(r.URL.Path, Prefix)
	a := h.assets[name]
	if !ok || a == nil {
		api.WriteError(w, http.StatusNotFound, "no such dashboard file: "+r.URL.Path+" (open "+Prefix+")")
		return
	}
	hd := w.Header()
	hd.Set("Content-Type", a.ctype)
	hd.Set("Content-Security-Policy", csp)
	hd.Set("X-Content-Type-Options", "nosniff")
	hd.Set("Referrer-Policy", "no-referrer")
	// Revalidate every time: the files change with the binary, and a 304 costs a
	// few hundred bytes.
	hd.Set("Cache-Control", "no-cache")
	hd.Set("Vary", "Accept-Encoding")
	body, etag := a.body, a.etag
	if a.gz != nil && acceptsGzip(r.Header.Get("Accept-Encoding")) {
		body, etag = a.gz, a.etagGzip
		hd.Set("Content-Encoding", "gzip")
	}
	hd.Set("ETag", etag)
	if matchesETag(r.Header.Get("If-None-Match"), etag) {
		hd.Del("Content-Type")
		w.WriteHeader(http.StatusNotModified)
		return
	}
	hd.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body) // the client went away; nothing to do
	}
}

// acceptsGzip reports whether an Accept-Encoding header admits gzip (RFC 9110
// 12.5.3: a listed coding with q=0 is refused).
func acceptsGzip(h string) bool {
	for _, part := range strings.Split(h, ",") {
		coding, params, _ := strings.Cut(strings.TrimSpace(part), ";")
		if c := strings.TrimSpace(coding); c != "gzip" && c != "*" {
			continue
		}
		q, weighted := strings.CutPrefix(strings.TrimSpace(params), "q=")
		if !weighted {
			return true
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(q), 64)
		return err == nil && f > 0
	}
	return false
}

// matchesETag reports whether an If-None-Match header names etag (or is "*").
func matchesETag(h, etag string) bool {
	for _, t := range strings.Split(h, ",") {
		t = strings.TrimPrefix(strings.TrimSpace(t), "W/")
		if t == etag || t == "*" {
			return true
		}
	}
	return false
}
