package layering

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

const module = "github.com/rayhost/rayhost"

// deps lists the packages pkgs import, directly or not (with go list -deps,
// as built for env, tests excluded).
func deps(t *testing.T, env []string, pkgs ...string) []string {
	t.Helper()
	gobin, err := exec.LookPath("go") // go test puts GOROOT/bin first in PATH
	if err != nil {
		t.Skip("no go command:", err)
	}
	cmd := exec.Command(gobin, append([]string{"list", "-deps", "-f", "{{.ImportPath}}"}, pkgs...)...)
	cmd.Dir = filepath.Join("..", "..")
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("go list %v: %v\n%s", pkgs, err, stderr)
	}
	return strings.Fields(string(out))
}

// forbid fails for each package of list under one of the prefixes.
func forbid(t *testing.T, what string, list []string, prefixes ...string) {
	t.Helper()
	for _, p := range list {
		for _, bad := range prefixes {
			if p == bad || strings.HasPrefix(p, bad+"/") {
				t.Errorf("%s imports %s", what, p)
			}
		}
	}
}

func TestServerImportsNeitherClientNorGuestSDK(t *testing.T) {
	list := deps(t, nil, "./host/...")
	if len(list) == 0 {
		t.Fatal("go list returned nothing for ./host/...")
	}
	forbid(t, "host/...", list, module+"/client", module+"/guest-sdk")
}

func TestClientImportsNoGuestSDK(t *testing.T) {
	forbid(t, "client", deps(t, nil, "./client"), module+"/guest-sdk")
}

func TestGuestLinksNoConnect(t *testing.T) {
	list := deps(t, []string{"GOOS=wasip1", "GOARCH=wasm"}, "./guest-sdk/ray", "./internal/kinds")
	forbid(t, "guest-sdk/ray (wasip1)", list, "connectrpc.com/connect", module+"/client", module+"/host")
}
