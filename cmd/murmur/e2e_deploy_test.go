package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"
)

// The Prometheus side of deploy/: the alerting rules (deploy/prometheus/alerts.yml,
// also checked and unit-tested by promtool in make check-deploy) and the Grafana
// dashboard (deploy/grafana/murmur.json). These tests check that every metric they
// name is one a running agent exports, with the labels and label values they match
// on, so a renamed metric or a typo in a matcher fails here and not on an operator's
// wall. PromQL is read by promqlSelectors, a small tokenizer: the Prometheus parser
// would pull most of the Prometheus module into go.mod.

const (
	alertsFile    = "../../deploy/prometheus/alerts.yml"
	dashboardFile = "../../deploy/grafana/murmur.json"
)

// scrapeLabels are added by Prometheus to every series of a target, and scrapeSeries
// are series Prometheus writes itself for each scrape: neither is on /metrics.
var (
	scrapeLabels = map[string]bool{"job": true, "instance": true}
	scrapeSeries = map[string]bool{"up": true, "scrape_duration_seconds": true, "scrape_samples_scraped": true,
		"scrape_samples_post_metric_relabeling": true, "scrape_series_added": true}
)

// deployQuery is one PromQL expression of deploy/ and where it comes from.
type deployQuery struct {
	where, expr string
}

type alertRule struct {
	Alert       string            `yaml:"alert"`
	Record      string            `yaml:"record"`
	Expr        string            `yaml:"expr"`
	For         string            `yaml:"for"`
	Labels      map[string]string `yaml:"labels"`
	Annotations map[string]string `yaml:"annotations"`
}

func loadAlertRules(t *testing.T) []alertRule {
	t.Helper()
	b, err := os.ReadFile(alertsFile)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Groups []struct {
			Name  string      `yaml:"name"`
			Rules []alertRule `yaml:"rules"`
		} `yaml:"groups"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatalf("%s: %v", alertsFile, err)
	}
	var out []alertRule
	for _, g := range f.Groups {
		out = append(out, g.Rules...)
	}
	if len(out) == 0 {
		t.Fatalf("%s has no rules", alertsFile)
	}
	return out
}

type grafanaPanel struct {
	Type    string `json:"type"`
	Title   string `json:"title"`
	Targets []struct {
		Expr       string `json:"expr"`
		Datasource struct {
			UID string `json:"uid"`
		} `json:"datasource"`
	} `json:"targets"`
	Datasource *struct {
		UID string `json:"uid"`
	} `json:"datasource"`
	Panels []grafanaPanel `json:"panels"` // a collapsed row's panels
}

type grafanaDashboard struct {
	Title      string         `json:"title"`
	UID        string         `json:"uid"`
	Panels     []grafanaPanel `json:"panels"`
	Templating struct {
		List []struct {
			Name  string `json:"name"`
			Type  string `json:"type"`
			Query any    `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

func loadDashboard(t *testing.T) grafanaDashboard {
	t.Helper()
	b, err := os.ReadFile(dashboardFile)
	if err != nil {
		t.Fatal(err)
	}
	var d grafanaDashboard
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatalf("%s: %v", dashboardFile, err)
	}
	return d
}

func (d grafanaDashboard) allPanels() []grafanaPanel {
	var out []grafanaPanel
	for _, p := range d.Panels {
		out = append(out, p)
		out = append(out, p.Panels...)
	}
	return out
}

// grafanaVars stands in for the dashboard's variables, so that its queries are PromQL.
var grafanaVars = strings.NewReplacer("$__rate_interval", "5m", "$__range", "1h", "${job}", "murmur", "$job", "murmur",
	"${region}", ".+", "$region", ".+")

var labelValuesRE = regexp.MustCompile(`^label_values\((.*),\s*([a-zA-Z_][a-zA-Z0-9_]*)\)$`)

// deployQueries returns every PromQL expression of the rules and the dashboard (its
// panels' targets, and the selectors of its label_values() variables).
func deployQueries(t *testing.T) []deployQuery {
	t.Helper()
	var qs []deployQuery
	for _, r := range loadAlertRules(t) {
		qs = append(qs, deployQuery{where: alertsFile + ": " + r.Alert + r.Record, expr: r.Expr})
	}
	d := loadDashboard(t)
	for _, p := range d.allPanels() {
		for i, tg := range p.Targets {
			qs = append(qs, deployQuery{where: fmt.Sprintf("%s: panel %q target %d", dashboardFile, p.Title, i), expr: grafanaVars.Replace(tg.Expr)})
		}
	}
	for _, v := range d.Templating.List {
		if v.Type != "query" {
			continue
		}
		q, _ := v.Query.(string)
		if m, ok := v.Query.(map[string]any); ok {
			q, _ = m["query"].(string)
		}
		m := labelValuesRE.FindStringSubmatch(strings.TrimSpace(grafanaVars.Replace(q)))
		if m == nil {
			t.Errorf("%s: variable %s: query %q is not label_values(selector, label)", dashboardFile, v.Name, q)
			continue
		}
		// The label itself must be on the selected series: select it with a matcher.
		qs = append(qs, deployQuery{where: dashboardFile + ": variable " + v.Name, expr: withMatcher(m[1], m[2]+`=~".+"`)})
	}
	return qs
}

// withMatcher adds a label matcher to a selector "name" or "name{...}".
func withMatcher(sel, m string) string {
	sel = strings.TrimSpace(sel)
	if strings.HasSuffix(sel, "}") {
		return strings.TrimSuffix(sel, "}") + "," + m + "}"
	}
	return sel + "{" + m + "}"
}

// TestDeployFilesShape: every alert has a for:, a severity label and a summary and a
// description; the dashboard has its rows, and every target uses the datasource
// variable (so it imports into any Grafana).
func TestDeployFilesShape(t *testing.T) {
	names := map[string]bool{}
	for _, r := range loadAlertRules(t) {
		if r.Alert == "" {
			continue
		}
		names[r.Alert] = true
		if _, err := time.ParseDuration(r.For); err != nil || r.For == "0s" {
			t.Errorf("alert %s: for: %q, want a duration", r.Alert, r.For)
		}
		if s := r.Labels["severity"]; s != "warning" && s != "critical" {
			t.Errorf("alert %s: severity label %q, want warning or critical", r.Alert, s)
		}
		for _, a := range []string{"summary", "description"} {
			if strings.TrimSpace(r.Annotations[a]) == "" {
				t.Errorf("alert %s: no %s annotation", r.Alert, a)
			}
		}
		if !strings.Contains(r.Annotations["description"], "Runbook") {
			t.Errorf("alert %s: the description has no runbook hint (\"Runbook: ...\")", r.Alert)
		}
	}
	for _, want := range []string{"MurmurNodeDead", "MurmurRegionHeadless", "MurmurWorkUnplaced", "MurmurRestartsRising", "MurmurIntentsNotConverging"} {
		if !names[want] {
			t.Errorf("alerts.yml has no %s", want)
		}
	}

	d := loadDashboard(t)
	if d.UID == "" || d.Title == "" {
		t.Errorf("dashboard uid %q title %q: want both", d.UID, d.Title)
	}
	var rows []string
	for _, p := range d.allPanels() {
		if p.Type == "row" {
			rows = append(rows, p.Title)
			continue
		}
		if p.Datasource == nil || p.Datasource.UID != "${datasource}" {
			t.Errorf("panel %q: datasource %+v, want uid ${datasource}", p.Title, p.Datasource)
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for _, tg := range p.Targets {
			if tg.Datasource.UID != "${datasource}" {
				t.Errorf("panel %q: a target's datasource is %q, want ${datasource}", p.Title, tg.Datasource.UID)
			}
		}
	}
	if want := []string{"Fleet", "Regions", "Failover", "Intents", "Workloads", "Gossip"}; !slices.Equal(rows, want) {
		t.Errorf("dashboard rows %v, want %v", rows, want)
	}
	hasDS := false
	for _, v := range d.Templating.List {
		hasDS = hasDS || (v.Name == "datasource" && v.Type == "datasource")
	}
	if !hasDS {
		t.Error("the dashboard has no datasource variable")
	}
}

// TestDeployQueriesParse: promtool parses every dashboard query (the rules are checked
// by make check-deploy). Each query goes into a recording rule of a temporary rules
// file for `promtool check rules`.
func TestDeployQueriesParse(t *testing.T) {
	promtool, err := exec.LookPath(cmpOr(os.Getenv("PROMTOOL"), "promtool"))
	if err != nil {
		if os.Getenv("MURMUR_REQUIRE_PROMTOOL") == "1" {
			t.Fatalf("promtool not found (MURMUR_REQUIRE_PROMTOOL=1): %v", err)
		}
		t.Skip("promtool not found; make check-deploy and CI run it")
	}
	var rules []map[string]string
	for i, q := range deployQueries(t) {
		rules = append(rules, map[string]string{"record": fmt.Sprintf("deploy:query_%d", i), "expr": q.expr})
	}
	b, err := yaml.Marshal(map[string]any{"groups": []any{map[string]any{"name": "dashboard", "rules": rules}}})
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "queries.yml")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "check", "rules", f).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check rules on the dashboard's queries: %v\n%s", err, out)
	}
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// exposition is what one /metrics answer holds: for each sample name (as Prometheus
// stores it: a histogram's name_bucket, name_sum, name_count), the label values seen
// for each label name.
type exposition map[string]map[string]map[string]bool

// parseExposition reads the Prometheus text format.
func parseExposition(r io.Reader) (exposition, error) {
	exp := exposition{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] == '#' {
			continue
		}
		end := strings.IndexAny(line, "{ ")
		if end < 0 {
			return nil, fmt.Errorf("sample line without a value: %q", line)
		}
		name := line[:end]
		labels := map[string]map[string]bool{}
		if exp[name] != nil {
			labels = exp[name]
		}
		exp[name] = labels
		if line[end] != '{' {
			continue
		}
		rest := line[end+1:]
		for {
			rest = strings.TrimLeft(rest, ", ")
			if strings.HasPrefix(rest, "}") {
				break
			}
			eq := strings.Index(rest, `="`)
			if eq < 0 {
				return nil, fmt.Errorf("bad label in %q", line)
			}
			lname := rest[:eq]
			val, n, err := unquoteLabel(rest[eq+1:])
			if err != nil {
				return nil, fmt.Errorf("%q: %w", line, err)
			}
			if labels[lname] == nil {
				labels[lname] = map[string]bool{}
			}
			labels[lname][val] = true
			rest = rest[eq+1+n:]
		}
	}
	return exp, sc.Err()
}

// unquoteLabel reads a quoted label value at the start of s (escapes \\, \", \n) and
// returns it with the number of bytes it took.
func unquoteLabel(s string) (string, int, error) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if i+1 == len(s) {
				return "", 0, fmt.Errorf("unterminated escape")
			}
			i++
			if s[i] == 'n' {
				b.WriteByte('\n')
			} else {
				b.WriteByte(s[i])
			}
		case '"':
			return b.String(), i + 1, nil
		default:
			b.WriteByte(s[i])
		}
	}
	return "", 0, fmt.Errorf("unterminated label value")
}

// check reports what of sel the exposition lacks ("" when it has it all): the sample
// name, a label the selector matches on, or the value of an equality matcher.
func (e exposition) check(sel promSelector) string {
	if scrapeSeries[sel.metric] {
		return ""
	}
	labels, ok := e[sel.metric]
	if !ok {
		return "no series " + sel.metric
	}
	for _, m := range sel.matchers {
		if scrapeLabels[m.name] || m.name == "__name__" {
			continue
		}
		vals, ok := labels[m.name]
		if !ok {
			return fmt.Sprintf("%s has no label %s (matcher %s%s%q)", sel.metric, m.name, m.name, m.op, m.value)
		}
		if m.op == "=" && !vals[m.value] {
			have := make([]string, 0, len(vals))
			for v := range vals {
				have = append(have, v)
			}
			slices.Sort(have)
			return fmt.Sprintf("%s has no series with %s=%q (it has %v)", sel.metric, m.name, m.value, have)
		}
	}
	return ""
}

// TestRealDeployMetricsExist runs an agent, gives its region a workload (the per-intent
// gauges of the coordinator exist once there is one), and checks every selector of the
// rules and the dashboard against its /metrics. Counters with labels are exported at 0
// from the start (the agent pre-creates the label values it knows), so nothing is
// skipped for not having happened yet.
func TestRealDeployMetricsExist(t *testing.T) {
	qs := deployQueries(t) // before starting anything: a broken file fails fast
	p := startAgent(t, "d1", freePort(t), "--region", "site-a")
	eventually(t, 30*time.Second, "d1 to coordinate site-a", func() bool {
		_, _, ok := agreedCoordinator([]*proc{p}, "site-a", 1)
		return ok
	})
	postIntent(t, p.http, []byte(`apiVersion: murmur/v1
kind: Workload
metadata: {name: web}
spec:
  replicas: 1
  driver: exec
  command: ["/bin/sleep", "3600"]
  resources: {cpu: 50m, memory: 16Mi}
`), "")
	var exp exposition
	eventually(t, 30*time.Second, "the coordinator's gauges for web on /metrics", func() bool {
		resp, err := http.Get("http://" + p.http + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		e, err := parseExposition(resp.Body)
		if err != nil {
			t.Fatalf("/metrics: %v", err)
		}
		exp = e
		return exp["murmur_coordinator_desired_instances"]["intent"]["web"]
	})
	checked := map[string]bool{}
	for _, q := range qs {
		sels, err := promqlSelectors(q.expr)
		if err != nil {
			t.Errorf("%s: %v in %q", q.where, err, q.expr)
			continue
		}
		if len(sels) == 0 {
			t.Errorf("%s: no metric in %q", q.where, q.expr)
		}
		for _, s := range sels {
			checked[s.metric] = true
			if why := exp.check(s); why != "" {
				t.Errorf("%s: %s", q.where, why)
			}
		}
	}
	if !t.Failed() {
		t.Logf("%d queries name %d metrics, all exported by a running agent", len(qs), len(checked))
	}
}

// promSelector is a vector selector of a PromQL expression: a metric name and the
// label matchers it carries.
type promSelector struct {
	metric   string
	matchers []promMatcher
}

type promMatcher struct {
	name, op, value string
}

type promToken struct {
	kind byte // 'i' identifier, 'n' number or duration, 's' string, 'p' punctuation, 'o' operator
	text string
}

// lexPromQL splits a PromQL expression into tokens. Numbers take letters along, so a
// duration (5m, 1h30m) or a hex number is one token.
func lexPromQL(s string) ([]promToken, error) {
	var out []promToken
	isIdent := func(c byte, first bool) bool {
		return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || !first && c >= '0' && c <= '9'
	}
	for i := 0; i < len(s); {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '#': // a comment runs to the end of the line
			for i < len(s) && s[i] != '\n' {
				i++
			}
		case c == '"' || c == '\'' || c == '`':
			j := i + 1
			for j < len(s) && s[j] != c {
				if s[j] == '\\' && c != '`' {
					j++
				}
				j++
			}
			if j >= len(s) {
				return nil, fmt.Errorf("unterminated string at %d", i)
			}
			val := s[i+1 : j]
			if c != '`' {
				val = unescapePromQL(val)
			}
			out = append(out, promToken{'s', val})
			i = j + 1
		case c >= '0' && c <= '9' || c == '.' && i+1 < len(s) && s[i+1] >= '0' && s[i+1] <= '9':
			j := i
			for j < len(s) && (isIdent(s[j], false) || s[j] == '.' || (s[j] == '+' || s[j] == '-') && (s[j-1] == 'e' || s[j-1] == 'E')) {
				j++
			}
			out = append(out, promToken{'n', s[i:j]})
			i = j
		case isIdent(c, true):
			j := i
			for j < len(s) && isIdent(s[j], false) {
				j++
			}
			out = append(out, promToken{'i', s[i:j]})
			i = j
		case strings.IndexByte("(){}[],", c) >= 0:
			out = append(out, promToken{'p', string(c)})
			i++
		case strings.IndexByte("=!<>~", c) >= 0: // ==, !=, =~, !~, <=, >=, =, <, >
			j := i
			for j < len(s) && strings.IndexByte("=!<>~", s[j]) >= 0 {
				j++
			}
			out = append(out, promToken{'o', s[i:j]})
			i = j
		case strings.IndexByte("+-*/%^@", c) >= 0:
			out = append(out, promToken{'o', string(c)})
			i++
		default:
			return nil, fmt.Errorf("unexpected %q at %d", c, i)
		}
	}
	return out, nil
}

// unescapePromQL resolves the backslash escapes of a quoted PromQL string (\n, \t and
// a character taken as it is: \", \', \\); the rarer \x and \u forms are kept as written.
func unescapePromQL(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '\\' || i+1 == len(s) {
			b.WriteByte(s[i])
			continue
		}
		i++
		switch s[i] {
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'x', 'u', 'U':
			b.WriteByte('\\')
			b.WriteByte(s[i])
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String()
}

// balanced reports whether the brackets of toks pair up.
func balanced(toks []promToken) bool {
	var stack []string
	pair := map[string]string{")": "(", "]": "[", "}": "{"}
	for _, t := range toks {
		if t.kind != 'p' {
			continue
		}
		switch t.text {
		case "(", "[", "{":
			stack = append(stack, t.text)
		case ")", "]", "}":
			if len(stack) == 0 || stack[len(stack)-1] != pair[t.text] {
				return false
			}
			stack = stack[:len(stack)-1]
		}
	}
	return len(stack) == 0
}

// Identifiers that are never metric names where they stand. Aggregation
// operators and functions are told apart by what follows them (a "(" or by/without).
var (
	promLabelLists = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true, "group_right": true}
	promWords      = map[string]bool{"bool": true, "and": true, "or": true, "unless": true, "inf": true, "nan": true}
	promAggs       = map[string]bool{"sum": true, "avg": true, "count": true, "min": true, "max": true, "group": true, "stddev": true,
		"stdvar": true, "topk": true, "bottomk": true, "quantile": true, "count_values": true, "limitk": true, "limit_ratio": true}
)

// promqlSelectors returns the vector selectors of a PromQL expression, in order. It
// skips functions and aggregation operators (an identifier followed by "(", or by
// by/without), the label lists of by, without, on, ignoring, group_left and
// group_right, string and number literals, ranges and subqueries ([...]), and offset
// durations; a bare {__name__="x"} selector counts as metric x.
func promqlSelectors(expr string) ([]promSelector, error) {
	toks, err := lexPromQL(expr)
	if err != nil {
		return nil, err
	}
	if !balanced(toks) {
		return nil, fmt.Errorf("unbalanced brackets")
	}
	var out []promSelector
	at := func(i int) promToken {
		if i < len(toks) {
			return toks[i]
		}
		return promToken{}
	}
	// skipGroup returns the index after the group opened at i ("(" or "[").
	skipGroup := func(i int, open, close string) (int, error) {
		depth := 0
		for j := i; j < len(toks); j++ {
			switch {
			case toks[j].kind == 'p' && toks[j].text == open:
				depth++
			case toks[j].kind == 'p' && toks[j].text == close:
				depth--
				if depth == 0 {
					return j + 1, nil
				}
			}
		}
		return 0, fmt.Errorf("unbalanced %s", open)
	}
	// matchers reads the label matchers of a selector whose "{" is at i.
	matchers := func(i int) ([]promMatcher, int, error) {
		var ms []promMatcher
		j := i + 1
		for {
			switch t := at(j); {
			case t.kind == 'p' && t.text == "}":
				return ms, j + 1, nil
			case t.kind == 'p' && t.text == ",":
				j++
			case t.kind == 'i' || t.kind == 's':
				op, val := at(j+1), at(j+2)
				if op.kind != 'o' || !slices.Contains([]string{"=", "!=", "=~", "!~"}, op.text) || val.kind != 's' {
					return nil, 0, fmt.Errorf("bad label matcher after %q", t.text)
				}
				ms = append(ms, promMatcher{name: t.text, op: op.text, value: val.text})
				j += 3
			default:
				return nil, 0, fmt.Errorf("bad label matcher at %q", t.text)
			}
		}
	}
	for i := 0; i < len(toks); {
		t := toks[i]
		switch {
		case t.kind == 'p' && t.text == "[":
			j, err := skipGroup(i, "[", "]")
			if err != nil {
				return nil, err
			}
			i = j
		case t.kind == 'p' && t.text == "{": // a selector without a name before its braces
			ms, j, err := matchers(i)
			if err != nil {
				return nil, err
			}
			sel := promSelector{matchers: ms}
			for _, m := range ms {
				if m.name == "__name__" && m.op == "=" {
					sel.metric = m.value
				}
			}
			if sel.metric == "" {
				return nil, fmt.Errorf("a selector without a metric name cannot be checked")
			}
			out = append(out, sel)
			i = j
		case t.kind == 'i' && promLabelLists[strings.ToLower(t.text)]:
			i++
			if n := at(i); n.kind == 'p' && n.text == "(" {
				j, err := skipGroup(i, "(", ")")
				if err != nil {
					return nil, err
				}
				i = j
			}
		case t.kind == 'i' && t.text == "offset":
			i += 2 // and its duration
		case t.kind == 'i' && promWords[strings.ToLower(t.text)]:
			i++
		case t.kind == 'i' && at(i+1).kind == 'p' && at(i+1).text == "(":
			i++ // a function or an aggregation operator
		case t.kind == 'i' && promAggs[t.text] && at(i+1).kind == 'i' && (at(i+1).text == "by" || at(i+1).text == "without"):
			i++ // sum by (...) (...)
		case t.kind == 'o' && t.text == "@":
			i += 2 // @ 1700000000 or @ start() (whose "(" and ")" are skipped next)
		case t.kind == 'i':
			sel := promSelector{metric: t.text}
			i++
			if n := at(i); n.kind == 'p' && n.text == "{" {
				ms, j, err := matchers(i)
				if err != nil {
					return nil, err
				}
				sel.matchers, i = ms, j
			}
			out = append(out, sel)
		default:
			i++
		}
	}
	return out, nil
}

func TestPromQLSelectors(t *testing.T) {
	type sel = promSelector
	type m = promMatcher
	tests := []struct {
		expr string
		want []sel
	}{
		{`up{job="murmur"} == 0`, []sel{{"up", []m{{"job", "=", "murmur"}}}}},
		{`max by (job, region) (murmur_region_headless) > 0`, []sel{{"murmur_region_headless", nil}}},
		{`sum without (instance) (rate(x_total{a!="b",c=~"d|e"}[5m]))`, []sel{{"x_total", []m{{"a", "!=", "b"}, {"c", "=~", "d|e"}}}}},
		{`increase(murmur_runtime_restarts_total[15m]) * on (instance) group_left (node, region) murmur_build_info > 3`,
			[]sel{{"murmur_runtime_restarts_total", nil}, {"murmur_build_info", nil}}},
		{`count by (job) (count_values by (job) ("digest", murmur_intents_digest)) > 1`, []sel{{"murmur_intents_digest", nil}}},
		{`histogram_quantile(0.99, sum by (le) (rate(h_seconds_bucket{job=~"m"}[1m])))`, []sel{{"h_seconds_bucket", []m{{"job", "=~", "m"}}}}},
		{`max by (job) (a) - on (job) group_right b > 0`, []sel{{"a", nil}, {"b", nil}}},
		{`rate(a[5m] offset 1h) / ignoring (x) b @ 1700000000 and bool c`, []sel{{"a", nil}, {"b", nil}, {"c", nil}}},
		{`max_over_time(a[1h:5m]) or vector(0) unless on() d`, []sel{{"a", nil}, {"d", nil}}},
		{`{__name__="a", b="c"}`, []sel{{"a", []m{{"__name__", "=", "a"}, {"b", "=", "c"}}}}},
		{`a{b="x\"y"} + 1e3 - 0x1f * Inf`, []sel{{"a", []m{{"b", "=", `x"y`}}}}},
		{`sum(a) by (x)`, []sel{{"a", nil}}},
		{`label_replace(a, "dst", "$1", "src", "(.*)")`, []sel{{"a", nil}}},
		{`a @ start()`, []sel{{"a", nil}}},
	}
	for _, tc := range tests {
		got, err := promqlSelectors(tc.expr)
		if err != nil {
			t.Errorf("promqlSelectors(%q): %v", tc.expr, err)
			continue
		}
		if !slices.EqualFunc(got, tc.want, func(a, b sel) bool { return a.metric == b.metric && slices.Equal(a.matchers, b.matchers) }) {
			t.Errorf("promqlSelectors(%q) = %+v, want %+v", tc.expr, got, tc.want)
		}
	}
	for _, bad := range []string{`a{b=}`, `sum(a`, `a{b="c"`, `{b="c"}`, `"open`} {
		if got, err := promqlSelectors(bad); err == nil {
			t.Errorf("promqlSelectors(%q) = %+v, want an error", bad, got)
		}
	}
}
