package host_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/guest-sdk/ray"
	"github.com/rayhost/rayhost/host"
	"github.com/rayhost/rayhost/internal/abi"
	"github.com/rayhost/rayhost/internal/testutil"
)

// The attack suite of issue 13, items 1 (the filesystem), 2 and 5 (and
// the cancel part of 12): hostile guests in testdata/attacker try each
// attack; each fails with a clear error, nothing outside what was granted
// changes, and a normal task on the same host still succeeds.

const attackerPkg = "./host/testdata/attacker"

// attackHost starts a host allowing the test's temp root, and registers
// the attacker guest.
func attackHost(t *testing.T) (*client.Client, string, string) {
	t.Helper()
	allowed, err := filepath.EvalSymlinks(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tmp, err := filepath.EvalSymlinks(os.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	h := testutil.StartHost(t, func(c *host.Config) { c.AllowedDirs = []string{allowed, tmp} })
	c := client.New(h.Addr())
	return c, testutil.Register(t, c, attackerPkg), allowed
}

// attackerServes checks a normal task succeeds after an attack.
func attackerServes(t *testing.T, c *client.Client, mod string) {
	t.Helper()
	var ok string
	mustCall(t, c, mod, "ok", &ok)
	if ok != "ok" {
		t.Fatalf("ok = %q", ok)
	}
}

// callWith runs fn(args) with mounts and returns its string result.
func callWith(t *testing.T, c *client.Client, mod, fn string, mounts []client.Mount, env map[string]string, args ...any) (string, error) {
	t.Helper()
	ctx := ctxFor(t, time.Minute)
	refs, err := c.SubmitCall(ctx, client.Call{Module: mod, Function: fn, Args: args, Mounts: mounts, Env: env})
	if err != nil {
		return "", err
	}
	var out string
	err = c.Get(ctx, refs[0], &out)
	return out, err
}

// TestAttackMountEscape: issue 13 item 1. A guest with a read-write mount
// tries to leave it by every path: symbolic links it makes (relative,
// absolute, through raw WASI), `..` in raw WASI paths, a hard link, a
// rename out, and symbolic links planted on the host beforehand (pointing
// at /etc, relatively out, and at a writable directory outside). Each fails
// with EPERM (or ENOENT where Go's own path cleaning stops it first) and
// nothing outside the mount is read or written. What a mount is for still
// works.
func TestAttackMountEscape(t *testing.T) {
	c, mod, allowed := attackHost(t)
	dir := filepath.Join(allowed, "mount")
	outside := filepath.Join(allowed, "outside")
	for _, d := range []string{filepath.Join(dir, "sub"), outside} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "data.txt"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Links planted on the host side, pointing out of the mount.
	for name, target := range map[string]string{
		"planted_abs": "/etc",
		"planted_rel": "../../../../../../../../../../etc",
		"planted_out": outside,
	} {
		if err := os.Symlink(target, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	mounts := []client.Mount{{HostPath: dir, GuestPath: "/m"}}
	for _, tc := range []struct{ attack, want string }{
		{"symlink_relative", "operation not permitted"},
		{"symlink_absolute", "operation not permitted"},
		{"symlink_raw", "operation not permitted"},
		{"dotdot", "operation not permitted"},
		{"dotdot_create", "operation not permitted"},
		{"hardlink", "operation not permitted"},
		{"rename_out", "operation not permitted"},
		{"planted_abs", "operation not permitted"},
		{"planted_rel", "operation not permitted"},
		{"planted_write", "operation not permitted"},
	} {
		t.Run(tc.attack, func(t *testing.T) {
			got, err := callWith(t, c, mod, "fs_attack", mounts, nil, tc.attack)
			if err != nil {
				t.Fatalf("%s: %v", tc.attack, err)
			}
			if !strings.Contains(strings.ToLower(got), tc.want) {
				t.Fatalf("%s: the guest saw %q; want it to say %q", tc.attack, got, tc.want)
			}
			t.Logf("the guest sees: %s", got)
			attackerServes(t, c, mod)
		})
	}
	// Nothing was made outside the mount, and the links were not made.
	for _, p := range []string{
		filepath.Join(outside, "pwned"), filepath.Join(allowed, "renamed-out.txt"),
		filepath.Join(allowed, "escaped-by-dotdot"), filepath.Join(dir, "esc"), filepath.Join(dir, "abs"),
		filepath.Join(dir, "raw"), filepath.Join(dir, "hard"),
	} {
		if _, err := os.Lstat(p); err == nil {
			t.Errorf("%s exists after the attacks", p)
		}
	}
	if b, err := os.ReadFile(filepath.Join(dir, "data.txt")); err != nil || string(b) != "data" {
		t.Errorf("data.txt = %q, %v", b, err)
	}
	t.Run("normal use of the mount", func(t *testing.T) {
		got, err := callWith(t, c, mod, "fs_attack", mounts, nil, "normal")
		if err != nil || !strings.HasPrefix(got, "written ") || !strings.Contains(got, "data.txt") || !strings.Contains(got, "newdir") {
			t.Fatalf("normal = %q, %v", got, err)
		}
		if b, err := os.ReadFile(filepath.Join(dir, "newdir", "out.txt")); err != nil || string(b) != "written" {
			t.Fatalf("the host sees %q, %v", b, err)
		}
	})
}

// TestAttackReadOnlyMount: issue 13 item 1. Every write-like operation on a
// read-only mount fails (create, open for writing, append, truncate,
// write, mkdir, rmdir, unlink, rename, symlink, link, utimes) and the
// directory is unchanged. (WASI preview 1 has no chmod; sandboxfs's
// TestReadOnly shows Chmod is refused too.)
func TestAttackReadOnlyMount(t *testing.T) {
	c, mod, allowed := attackHost(t)
	dir := filepath.Join(allowed, "ro")
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	file := filepath.Join(dir, "data.txt")
	if err := os.WriteFile(file, []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	before, err := os.Stat(file)
	if err != nil {
		t.Fatal(err)
	}
	got, err := callWith(t, c, mod, "fs_attack", []client.Mount{{HostPath: dir, GuestPath: "/r", ReadOnly: true}}, nil, "ro_writes")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(got, "\n")
	if len(lines) != 13 {
		t.Fatalf("%d operations reported, want 13:\n%s", len(lines), got)
	}
	for _, l := range lines {
		l = strings.ToLower(l)
		// A write to a descriptor opened read-only is EBADF, as on any
		// system; every other operation is EROFS.
		if !strings.Contains(l, "read-only file system") && !(strings.HasPrefix(l, "write to a read-only fd:") && strings.Contains(l, "bad file number")) {
			t.Errorf("unclear refusal: %s", l)
		}
	}
	t.Logf("the guest sees:\n%s", got)
	ents, err := os.ReadDir(dir)
	if err != nil || len(ents) != 2 {
		t.Fatalf("the directory holds %v, %v; want data.txt and sub only", ents, err)
	}
	after, err := os.Stat(file)
	if b, _ := os.ReadFile(file); err != nil || string(b) != "data" || after.Mode() != before.Mode() || !after.ModTime().Equal(before.ModTime()) {
		t.Fatalf("data.txt changed: %q, mode %v (was %v), mtime %v (was %v)", b, after.Mode(), before.Mode(), after.ModTime(), before.ModTime())
	}
	attackerServes(t, c, mod)
}

// TestAttackGrants: issue 13 item 2. A task's children get no more than
// it holds: no mount it was not granted, no read-write mount of what it
// holds read-only, no environment variable (or value) it does not have;
// a subdirectory of its mount, read-only, is fine; the same for an actor's
// creation, and an actor's methods hold its grants. Over the API a task
// gets only what the request asks for, never its function's registered
// default grants.
func TestAttackGrants(t *testing.T) {
	c, mod, allowed := attackHost(t)
	dir := filepath.Join(allowed, "granted")
	if err := os.MkdirAll(filepath.Join(dir, "sub"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "sub", "data.txt"), []byte("data"), 0o644); err != nil {
		t.Fatal(err)
	}
	ro := []client.Mount{{HostPath: dir, GuestPath: "/g", ReadOnly: true}}
	// The parent returns its child's failure: the message carries the
	// child's permission_denied.
	denied := func(t *testing.T, err error, want string) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), "failed: permission_denied: host: permission denied: ") || !strings.Contains(err.Error(), want) {
			t.Fatalf("error %v; want the child's permission_denied saying %q", err, want)
		}
		t.Logf("the caller sees: %s", firstLine(err.Error()))
		attackerServes(t, c, mod)
	}
	t.Run("self-granted mount", func(t *testing.T) {
		_, err := callWith(t, c, mod, "spawn_mount", nil, nil, dir, false, "/c/sub/new.txt")
		denied(t, err, "holds no grant that covers it")
		if _, err := os.Stat(filepath.Join(dir, "sub", "new.txt")); err == nil {
			t.Fatal("the child wrote the file")
		}
	})
	t.Run("self-granted read-only mount", func(t *testing.T) {
		_, err := callWith(t, c, mod, "spawn_mount", nil, nil, dir, true, "/c/sub/data.txt")
		denied(t, err, "holds no grant that covers it")
	})
	t.Run("widening read-only to read-write", func(t *testing.T) {
		_, err := callWith(t, c, mod, "spawn_mount", ro, nil, dir, false, "/c/sub/new.txt")
		denied(t, err, "(read-write): the submitting task holds no grant")
		if _, err := os.Stat(filepath.Join(dir, "sub", "new.txt")); err == nil {
			t.Fatal("the child wrote the file")
		}
	})
	t.Run("a sibling directory", func(t *testing.T) {
		_, err := callWith(t, c, mod, "spawn_mount", []client.Mount{{HostPath: filepath.Join(dir, "sub"), GuestPath: "/g", ReadOnly: true}}, nil, allowed, true, "/c/granted/sub/data.txt")
		denied(t, err, "holds no grant that covers it")
	})
	t.Run("a subdirectory of a read-only grant, read-only", func(t *testing.T) {
		got, err := callWith(t, c, mod, "spawn_mount", ro, nil, filepath.Join(dir, "sub"), true, "/c/data.txt")
		if err != nil || got != "data" {
			t.Fatalf("= %q, %v", got, err)
		}
	})
	t.Run("an actor created with a self-granted mount", func(t *testing.T) {
		_, err := callWith(t, c, mod, "spawn_actor", nil, nil, dir, false, "/c/sub/data.txt")
		if err == nil || !strings.Contains(err.Error(), "is dead: its creation was refused: host: permission denied: mount") {
			t.Fatalf("error %v; want the actor dead because its creation was refused", err)
		}
		t.Logf("the caller sees: %s", firstLine(err.Error()))
		attackerServes(t, c, mod)
	})
	t.Run("an actor method passes on its actor's grant", func(t *testing.T) {
		got, err := callWith(t, c, mod, "actor_spawns", ro, nil, dir)
		if err != nil || got != "data" {
			t.Fatalf("= %q, %v", got, err)
		}
	})
	t.Run("an environment variable the parent lacks", func(t *testing.T) {
		_, err := callWith(t, c, mod, "spawn_env", nil, map[string]string{"A": "1"}, "B", "2")
		denied(t, err, `environment variable "B"`)
	})
	t.Run("another value for a variable the parent has", func(t *testing.T) {
		_, err := callWith(t, c, mod, "spawn_env", nil, map[string]string{"A": "1"}, "A", "2")
		denied(t, err, `environment variable "A"`)
	})
	t.Run("a variable the parent has", func(t *testing.T) {
		got, err := callWith(t, c, mod, "spawn_env", nil, map[string]string{"A": "1"}, "A", "1")
		if err != nil || got != "1" {
			t.Fatalf("= %q, %v", got, err)
		}
	})
	t.Run("a function's default grant over the API", func(t *testing.T) {
		got, err := callWith(t, c, mod, "default_grant", nil, nil)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("the guest sees: %s", got)
	})
}

// TestAttackForgedTaskIDs: issue 13 item 5. A guest that knows a victim's
// TaskID pre-claims the victim's child IDs and puts a value under its
// result's ID; the host drops both, fails the forger with
// permission_denied, and the victim computes its own answer (20, not
// 5,000,000).
func TestAttackForgedTaskIDs(t *testing.T) {
	c, mod, allowed := attackHost(t)
	gate := filepath.Join(allowed, "gate")
	if err := os.MkdirAll(gate, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t, 2*time.Minute)
	victim, err := c.SubmitCall(ctx, client.Call{Module: mod, Function: "victim", Args: []any{5},
		Mounts: []client.Mount{{HostPath: gate, GuestPath: "/gate", ReadOnly: true}}})
	if err != nil {
		t.Fatal(err)
	}
	victimID := victim[0].ID[:32] // an ObjectID is its TaskID and an index
	refs, err := c.SubmitCall(ctx, client.Call{Module: mod, Function: "forge", Args: []any{victimID, 5}})
	if err != nil {
		t.Fatal(err)
	}
	var s string
	err = c.Get(ctx, refs[0], &s)
	var te *ray.TaskError
	if !errors.As(err, &te) || te.Kind != "permission_denied" || !strings.Contains(err.Error(), "forged ID") {
		t.Fatalf("the forger got %q, %v (kind %q); want permission_denied for a forged ID", s, err, kindOf(te))
	}
	t.Logf("the forger sees: %s", firstLine(err.Error()))
	if err := os.WriteFile(filepath.Join(gate, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var sum int
	if err := c.Get(ctx, victim[0], &sum); err != nil || sum != 20 {
		t.Fatalf("victim(5) = %d, %v; want 20", sum, err)
	}
	attackerServes(t, c, mod)
}

// TestAttackBadOptions: a guest that bypasses the SDK submits a child with a
// retry count below -1 or 1e-7 GPUs (which would round to none, and ran
// on a host without a GPU): the worker refuses the submit, or the host
// fails the child with bad_request, and the host keeps serving.
func TestAttackBadOptions(t *testing.T) {
	c, mod, _ := attackHost(t)
	ctx := ctxFor(t, 2*time.Minute)
	for _, which := range []string{"retries", "gpus"} {
		refs, err := c.SubmitCall(ctx, client.Call{Module: mod, Function: "bad_options", Args: []any{which}})
		if err != nil {
			t.Fatal(err)
		}
		var answer struct {
			Refused string
			Child   client.ObjectRef
		}
		if err := c.Get(ctx, refs[0], &answer); err != nil {
			t.Fatalf("%s: %v", which, err)
		}
		if answer.Refused == fmt.Sprintf("refused:%d", abi.ErrCodeBadRequest) {
			t.Logf("%s: the worker refused the submit (bad_request)", which)
			continue
		}
		var v int
		err = c.Get(ctx, client.ObjectRef{ID: answer.Child.ID, Owner: refs[0].Owner}, &v)
		var te *ray.TaskError
		if !errors.As(err, &te) || te.Kind != "bad_request" {
			t.Fatalf("%s: the child got %d, %v (kind %q); want bad_request", which, v, err, kindOf(te))
		}
		t.Logf("%s: %s", which, firstLine(err.Error()))
	}
	attackerServes(t, c, mod)
}

// TestAttackCancelOthers: issue 13 item 12 (cancel). A guest force-cancels
// another client's task by its ID: the host refuses (an event on the
// attacker's task says why) and the victim finishes.
func TestAttackCancelOthers(t *testing.T) {
	c, mod, allowed := attackHost(t)
	gate := filepath.Join(allowed, "gate")
	if err := os.MkdirAll(gate, 0o755); err != nil {
		t.Fatal(err)
	}
	ctx := ctxFor(t, 2*time.Minute)
	victim, err := c.SubmitCall(ctx, client.Call{Module: mod, Function: "victim", Args: []any{5},
		Mounts: []client.Mount{{HostPath: gate, GuestPath: "/gate", ReadOnly: true}}})
	if err != nil {
		t.Fatal(err)
	}
	victimID := victim[0].ID[:32]
	var s string
	mustCall(t, c, mod, "cancel_other", &s, victimID)
	evs, _, err := c.ListTasks(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	refused := false
	for _, e := range evs {
		if strings.Contains(e.Message, "refused: host: permission denied: cancel of task "+victimID) {
			refused = true
			t.Logf("event: %s", e.Message)
		}
	}
	if !refused {
		t.Error("no event says the cancel was refused")
	}
	if err := os.WriteFile(filepath.Join(gate, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	var sum int
	if err := c.Get(ctx, victim[0], &sum); err != nil || sum != 20 {
		t.Fatalf("victim(5) = %d, %v; want 20 (not cancelled)", sum, err)
	}
	attackerServes(t, c, mod)
}
