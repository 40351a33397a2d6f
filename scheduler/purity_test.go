package scheduler

import (
	"go/ast"
	"go/parser"
	"go/token"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// TestPurity checks that the package's non-test code imports only pure standard
// library packages, starts no goroutines and reads no clock.
func TestPurity(t *testing.T) {
	allowed := map[string]bool{
		"cmp": true, "fmt": true, "maps": true, "math": true, "math/bits": true,
		"slices": true, "sort": true, "strconv": true, "strings": true, "time": true,
		"github.com/murmur-edge/murmur/policy": true, // pure as well: intent types and versions
	}
	// time is allowed for time.Time and time.Duration values only.
	forbiddenTime := map[string]bool{
		"Now": true, "Since": true, "Until": true, "Sleep": true, "After": true, "AfterFunc": true,
		"Tick": true, "NewTimer": true, "NewTicker": true,
	}
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	fset := token.NewFileSet()
	checked := 0
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, name, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		checked++
		for _, imp := range f.Imports {
			path, _ := strconv.Unquote(imp.Path.Value)
			if !allowed[path] {
				t.Errorf("%s imports %q; the scheduler may import only %v", name, path, allowed)
			}
		}
		ast.Inspect(f, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.GoStmt:
				t.Errorf("%s: go statement at %s; the scheduler starts no goroutines", name, fset.Position(n.Pos()))
			case *ast.SelectorExpr:
				if id, ok := n.X.(*ast.Ident); ok && id.Name == "time" && forbiddenTime[n.Sel.Name] {
					t.Errorf("%s: time.%s at %s; the scheduler reads no clock", name, n.Sel.Name, fset.Position(n.Pos()))
				}
			}
			return true
		})
		for _, d := range f.Decls {
			if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.VAR {
				t.Errorf("%s: package-level var at %s; the scheduler keeps no globals", name, fset.Position(g.Pos()))
			}
		}
	}
	if checked == 0 {
		t.Fatal("no source files checked")
	}
}
