package agent

import (
	"net/http"
	"strings"
	"testing"
	"time"
)

// The dashboard's files are served without a token, its data is not: an agent that
// enforces tokens answers /ui/ and refuses /v1/members without one.
func TestUIServedWithoutTokenDataIsNot(t *testing.T) {
	_, srv := newTokenAgent(t, time.Now)
	client := srv.Client()
	client.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	cases := []struct {
		path, secret string
		status       int
		ctype        string // prefix of Content-Type
		location     string
	}{
		{"/ui/", "", http.StatusOK, "text/html", ""},
		{"/ui/app.js", "", http.StatusOK, "text/javascript", ""},
		{"/ui/style.css", "", http.StatusOK, "text/css", ""},
		{"/ui/nope.js", "", http.StatusNotFound, "application/json", ""},
		{"/ui", "", http.StatusTemporaryRedirect, "", "/ui/"},
		{"/", "", http.StatusFound, "", "/ui/"},
		{"/v1/members", "", http.StatusUnauthorized, "application/json", ""},
		{"/v1/members", readSecret, http.StatusOK, "application/json", ""},
		{"/nope", readSecret, http.StatusNotFound, "application/json", ""},
	}
	for _, tc := range cases {
		req, _ := http.NewRequest("GET", srv.URL+tc.path, nil)
		if tc.secret != "" {
			req.Header.Set("Authorization", "Bearer "+tc.secret)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != tc.status || !strings.HasPrefix(resp.Header.Get("Content-Type"), tc.ctype) || resp.Header.Get("Location") != tc.location {
			t.Errorf("GET %s (token %v): HTTP %d %q Location %q, want %d %q %q", tc.path, tc.secret != "", resp.StatusCode,
				resp.Header.Get("Content-Type"), resp.Header.Get("Location"), tc.status, tc.ctype, tc.location)
		}
	}
}
