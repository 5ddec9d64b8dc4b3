package build

import (
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestRepoRootHoldsTheModule(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(RepoRoot(), "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), "module github.com/rayhost/rayhost\n") {
		t.Fatalf("RepoRoot %s is not the rayhost module", RepoRoot())
	}
}

// TestImportsNothingOfRayhost: any package's internal tests may import
// build, so build must not import them back.
func TestImportsNothingOfRayhost(t *testing.T) {
	files, err := filepath.Glob("*.go")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range files {
		if strings.HasSuffix(name, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); strings.HasPrefix(p, "github.com/rayhost/") {
				t.Errorf("%s imports %s", name, p)
			}
		}
	}
}
