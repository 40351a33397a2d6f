package policy

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"reflect"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// document is the wire shape of one intent document.
type document struct {
	APIVersion string     `yaml:"apiVersion"`
	Kind       string     `yaml:"kind"`
	Metadata   Metadata   `yaml:"metadata"`
	Spec       yaml.Node  `yaml:"spec"`
	Signature  *Signature `yaml:"signature"`
}

var (
	documentType = reflect.TypeOf(document{})
	nodeType     = reflect.TypeOf(yaml.Node{})
	specTypes    = map[string]reflect.Type{
		KindWorkload: reflect.TypeOf(WorkloadSpec{}),
		KindPolicy:   reflect.TypeOf(PolicySpec{}),
	}
)

// Parse decodes a request body holding one or many intent documents: YAML (documents
// separated by "---") or JSON (one object, or an array of objects). JSON is recognised
// by its first non-blank byte ('{' or '['). Every document is decoded strictly,
// defaulted and validated; names must be unique in the request. On failure the error
// is Problems listing every problem found, with field paths; when the request holds
// more than one document the paths start with "documents[i]." (0-based).
func Parse(body []byte) ([]Intent, error) {
	docs, ps := splitDocuments(body)
	if len(ps) > 0 {
		return nil, ps
	}
	if len(docs) == 0 {
		return nil, Problems{{Message: "the request holds no intent documents; send at least one YAML or JSON document"}}
	}
	var all Problems
	out := make([]Intent, 0, len(docs))
	seen := map[string]int{}
	for i, d := range docs {
		prefix := ""
		if len(docs) > 1 {
			prefix = fmt.Sprintf("documents[%d]", i)
		}
		in, dps := decodeDocument(d)
		if len(dps) == 0 {
			Default(&in)
			dps = Validate(&in)
		}
		if len(dps) == 0 {
			Normalize(&in)
			if b, err := Canonical(&in); err != nil {
				dps = Problems{{Message: err.Error()}}
			} else if len(b) > MaxIntentBytes {
				dps = Problems{{Message: fmt.Sprintf("the intent is %d bytes once normalised; the limit is %d", len(b), MaxIntentBytes)}}
			}
		}
		for _, p := range dps {
			all = append(all, Problem{Field: join(prefix, p.Field), Message: p.Message})
		}
		if len(dps) == 0 {
			if j, dup := seen[in.Name()]; dup {
				all.add(join(prefix, "metadata.name"), "duplicate name %q (also in documents[%d]); each name may appear once per request", in.Name(), j)
			}
			seen[in.Name()] = i
			out = append(out, in)
		}
	}
	if len(all) > 0 {
		return nil, all
	}
	return out, nil
}

// splitDocuments turns the body into one yaml.Node per document (JSON converted).
func splitDocuments(body []byte) ([]*yaml.Node, Problems) {
	trimmed := bytes.TrimSpace(body)
	if len(trimmed) > 0 && (trimmed[0] == '{' || trimmed[0] == '[') {
		return splitJSON(trimmed)
	}
	dec := yaml.NewDecoder(bytes.NewReader(body))
	var docs []*yaml.Node
	for i := 0; ; i++ {
		var n yaml.Node
		err := dec.Decode(&n)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, Problems{{Message: fmt.Sprintf("document %d is not valid YAML: %s", i+1, strings.TrimPrefix(err.Error(), "yaml: "))}}
		}
		if len(n.Content) == 0 || (n.Content[0].Kind == yaml.ScalarNode && n.Content[0].ShortTag() == "!!null") {
			return nil, Problems{{Message: fmt.Sprintf("document %d is empty; remove the empty document (two '---' in a row or a trailing '---')", i+1)}}
		}
		raw, expanded := countNodes(n.Content[0])
		if expanded-raw > maxYAMLAliasExpansion {
			return nil, Problems{{Message: fmt.Sprintf("document %d: YAML aliases expand to more than %d extra nodes; write the document out without anchors and aliases", i+1, maxYAMLAliasExpansion)}}
		}
		docs = append(docs, n.Content[0])
	}
	return docs, nil
}

// countNodes returns the number of nodes in the tree as written and as expanded through
// aliases. Expanded sizes are memoised per node and saturate, so a bomb costs little.
func countNodes(root *yaml.Node) (raw, expanded int) {
	const ceiling = 4 * maxYAMLAliasExpansion
	memo := map[*yaml.Node]int{}
	var size func(n *yaml.Node, depth int) int
	size = func(n *yaml.Node, depth int) int {
		if n == nil {
			return 1
		}
		if v, ok := memo[n]; ok {
			return v
		}
		if depth > 1000 {
			return ceiling
		}
		memo[n] = ceiling // a cycle through an alias saturates
		total := 1
		if n.Kind == yaml.AliasNode {
			total = size(n.Alias, depth+1)
		}
		for _, c := range n.Content {
			total += size(c, depth+1)
			if total >= ceiling {
				total = ceiling
				break
			}
		}
		memo[n] = total
		return total
	}
	var walk func(n *yaml.Node)
	walk = func(n *yaml.Node) {
		raw++
		for _, c := range n.Content {
			walk(c)
		}
	}
	walk(root)
	return raw, size(root, 0)
}

func splitJSON(body []byte) ([]*yaml.Node, Problems) {
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, Problems{{Message: "the body is not valid JSON: " + strings.TrimPrefix(err.Error(), "json: ")}}
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, Problems{{Message: "the body holds data after the first JSON value; send one object or one array of objects"}}
	}
	var items []any
	if arr, ok := v.([]any); ok {
		items = arr
	} else {
		items = []any{v}
	}
	docs := make([]*yaml.Node, 0, len(items))
	for i, it := range items {
		if it == nil {
			return nil, Problems{{Message: fmt.Sprintf("document %d is empty (null)", i+1)}}
		}
		docs = append(docs, jsonToNode(it))
	}
	return docs, nil
}

// jsonToNode converts a decoded JSON value into the yaml.Node tree the strict checker
// walks, so YAML and JSON share one set of rules and messages.
func jsonToNode(v any) *yaml.Node {
	switch x := v.(type) {
	case map[string]any:
		n := &yaml.Node{Kind: yaml.MappingNode, Tag: "!!map"}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			n.Content = append(n.Content, &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: k}, jsonToNode(x[k]))
		}
		return n
	case []any:
		n := &yaml.Node{Kind: yaml.SequenceNode, Tag: "!!seq"}
		for _, e := range x {
			n.Content = append(n.Content, jsonToNode(e))
		}
		return n
	case string:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: x, Style: yaml.DoubleQuotedStyle}
	case json.Number:
		tag := "!!float"
		if _, err := strconv.ParseInt(string(x), 10, 64); err == nil {
			tag = "!!int"
		}
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: tag, Value: string(x)}
	case bool:
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!bool", Value: strconv.FormatBool(x)}
	default: // nil
		return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!null", Value: "null"}
	}
}

// decodeDocument checks one document's shape strictly and decodes it.
func decodeDocument(root *yaml.Node) (Intent, Problems) {
	var ps Problems
	if root.Kind != yaml.MappingNode {
		return Intent{}, Problems{{Message: "a document must be a mapping with apiVersion, kind, metadata and spec"}}
	}
	checkNode(root, documentType, "", &ps)
	kindNode := lookup(root, "kind")
	specNode := lookup(root, "spec")
	kind := ""
	if kindNode != nil && kindNode.Kind == yaml.ScalarNode {
		kind = kindNode.Value
	}
	st, known := specTypes[kind]
	switch {
	case kindNode == nil || kind == "":
		ps.add("kind", "required; set kind: Workload or kind: Policy")
	case !known:
		ps.add("kind", "unknown kind %q; want Workload or Policy", kind)
	}
	if specNode == nil {
		ps.add("spec", "required")
	} else if known {
		checkNode(specNode, st, "spec", &ps)
	}
	if len(ps) > 0 {
		return Intent{}, ps
	}
	var d document
	if err := root.Decode(&d); err != nil {
		return Intent{}, Problems{{Message: "cannot decode document: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	in := Intent{APIVersion: d.APIVersion, Kind: d.Kind, Metadata: d.Metadata, Signature: d.Signature}
	var err error
	switch kind {
	case KindWorkload:
		in.Workload = &WorkloadSpec{}
		err = d.Spec.Decode(in.Workload)
	case KindPolicy:
		in.Policy = &PolicySpec{}
		err = d.Spec.Decode(in.Policy)
	}
	if err != nil {
		return Intent{}, Problems{{Field: "spec", Message: "cannot decode: " + strings.TrimPrefix(err.Error(), "yaml: ")}}
	}
	return in, nil
}

func deref(n *yaml.Node) *yaml.Node {
	for i := 0; n != nil && n.Kind == yaml.AliasNode && i < 100; i++ {
		n = n.Alias
	}
	return n
}

func lookup(m *yaml.Node, key string) *yaml.Node {
	for i := 0; i+1 < len(m.Content); i += 2 {
		if m.Content[i].Value == key {
			return deref(m.Content[i+1])
		}
	}
	return nil
}

func isNull(n *yaml.Node) bool { return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null" }

// checkNode walks n against Go type t and reports unknown fields, duplicate keys and
// wrong types with their paths. It is what makes decoding strict and exhaustive.
func checkNode(n *yaml.Node, t reflect.Type, path string, ps *Problems) {
	n = deref(n)
	if n == nil {
		ps.add(path, "unresolvable alias")
		return
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if isNull(n) {
		return // absent: defaults apply, Validate reports required fields
	}
	if t == nodeType {
		return // spec: checked separately against its kind's type
	}
	switch t.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			ps.add(path, "must be a mapping (got %s)", describe(n))
			return
		}
		fields := map[string]reflect.StructField{}
		var names []string
		for i := 0; i < t.NumField(); i++ {
			f := t.Field(i)
			name := strings.Split(f.Tag.Get("yaml"), ",")[0]
			if name == "" || name == "-" {
				continue
			}
			fields[name] = f
			names = append(names, name)
		}
		eachKey(n, path, ps, func(key, p string, v *yaml.Node) {
			f, ok := fields[key]
			if !ok {
				ps.add(p, "unknown field; known fields here: %s", strings.Join(names, ", "))
				return
			}
			checkNode(v, f.Type, p, ps)
		})
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			ps.add(path, "must be a mapping of strings (got %s)", describe(n))
			return
		}
		eachKey(n, path, ps, func(_, p string, v *yaml.Node) { checkNode(v, t.Elem(), p, ps) })
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			ps.add(path, "must be a list (got %s)", describe(n))
			return
		}
		for i, c := range n.Content {
			checkNode(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i), ps)
		}
	case reflect.String:
		if n.Kind != yaml.ScalarNode {
			ps.add(path, "must be a string (got %s)", describe(n))
		}
	case reflect.Int:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!int" {
			ps.add(path, "must be an integer (got %s)", describe(n))
			return
		}
		var v int64
		if err := n.Decode(&v); err != nil || v > 1<<31 || v < -(1<<31) {
			ps.add(path, "integer %s is out of range", n.Value)
		}
	case reflect.Float64:
		if n.Kind != yaml.ScalarNode || (n.ShortTag() != "!!int" && n.ShortTag() != "!!float") {
			ps.add(path, "must be a number (got %s)", describe(n))
		}
	case reflect.Bool:
		if n.Kind != yaml.ScalarNode || n.ShortTag() != "!!bool" {
			ps.add(path, "must be true or false (got %s)", describe(n))
		}
	default:
		panic(fmt.Sprintf("policy: checkNode: unhandled type %s", t)) // programmer error
	}
}

func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	}
	v := n.Value
	if len(v) > 40 {
		v = v[:40] + "..."
	}
	switch n.ShortTag() {
	case "!!str":
		return fmt.Sprintf("string %q", v)
	case "!!int", "!!float":
		return "number " + v
	case "!!bool":
		return "boolean " + v
	}
	return fmt.Sprintf("%q", v)
}

// eachKey walks the pairs of a mapping node, reporting non-string and duplicate keys
// at their path, and calls fn with every other key, its path and its value.
func eachKey(n *yaml.Node, path string, ps *Problems, fn func(key, p string, v *yaml.Node)) {
	seen := map[string]bool{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k := deref(n.Content[i])
		if k == nil || k.Kind != yaml.ScalarNode {
			ps.add(path, "keys must be strings")
			continue
		}
		p := join(path, k.Value)
		if seen[k.Value] {
			ps.add(p, "duplicate key")
			continue
		}
		seen[k.Value] = true
		fn(k.Value, p, n.Content[i+1])
	}
}
