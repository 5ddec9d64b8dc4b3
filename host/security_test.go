package host_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/guest-sdk/ray"
	"github.com/rayhost/rayhost/host"
	"github.com/rayhost/rayhost/internal/testutil"
)

const hostilePkg = "./host/testdata/hostile"

// TestHostileGuests: every attack fails with the error the caller sees, and
// the host runs a normal task right after.
func TestHostileGuests(t *testing.T) {
	h := testutil.StartHost(t, func(c *host.Config) {
		c.MaxLogBytes = 1 << 20
		c.MaxWorkers = 6
		c.MaxTaskDepth = 50
		c.MaxTreeTasks = 200
	})
	c := client.New(h.Addr())
	mod := testutil.Register(t, c, hostilePkg)
	none := int32(0)
	// A real listener the guest will try to reach: it must never accept.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan struct{}, 1)
	go func() {
		if c, err := ln.Accept(); err == nil {
			c.Close()
			accepted <- struct{}{}
		}
	}()
	tests := []struct {
		name string
		call client.Call
		kind string // the TaskError's kind; "" means the call succeeds
		want string // in the error message, or in the JSON result
	}{
		{"infinite loop with a timeout", client.Call{Function: "loop", Timeout: 500 * time.Millisecond, MaxRetries: &none}, "timeout", "ran past its timeout of 500ms"},
		{"memory bomb", client.Call{Function: "memory_bomb", MemoryLimitBytes: 64 << 20, MaxRetries: &none}, "out_of_memory", "ran out of memory (limit 64 MiB)"},
		{"deep recursion", client.Call{Function: "deep_recursion", MemoryLimitBytes: 64 << 20, MaxRetries: &none}, "out_of_memory", "ran out of memory"},
		{"a 1 GiB result", client.Call{Function: "big_result", Args: []any{1 << 30}, MemoryLimitBytes: 4 << 30, MaxRetries: &none}, "limit", "too large"},
		{"printing without end", client.Call{Function: "print_forever", MaxRetries: &none}, "limit", "more than 1048576 bytes of output"},
		{"opening a file", client.Call{Function: "open_file"}, "", "/etc/passwd"},
		{"dialling a socket", client.Call{Function: "dial", Args: []any{ln.Addr().String()}}, "", "dial tcp " + ln.Addr().String()},
		{"reading the environment", client.Call{Function: "environment"}, "", `["HOME="]`},
		{"100,000 nested submissions", client.Call{Function: "bomb", Args: []any{100_000}}, "application", "no worker process can run the task"},
		{"10,000 submissions from one task", client.Call{Function: "fan_out", Args: []any{10_000}}, "application", "unfinished tasks, the limit is 200 (MaxTreeTasks)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := ctxFor(t, testutil.HangGuard)
			tt.call.Module = mod
			refs, err := c.SubmitCall(ctx, tt.call)
			if err != nil {
				t.Fatal(err)
			}
			vals, err := c.GetValues(ctx, refs)
			if tt.kind == "" {
				if err != nil || !strings.Contains(string(vals[0].JSON), tt.want) {
					t.Fatalf("result %s, %v; want it to contain %q", vals[0].JSON, err, tt.want)
				}
				t.Logf("result: %s", vals[0].JSON)
			} else {
				var te *ray.TaskError
				if !errors.As(err, &te) || te.Kind != tt.kind || !strings.Contains(err.Error(), tt.want) {
					t.Fatalf("error %v (kind %q); want kind %q saying %q", err, kindOf(te), tt.kind, tt.want)
				}
				t.Logf("caller sees: %s", firstLine(err.Error()))
			}
			var ok string
			mustCall(t, c, mod, "ok", &ok)
		})
	}
	select {
	case <-accepted:
		t.Fatal("a guest opened a real socket to the test's listener")
	default:
	}
	t.Run("garbage pointers to every host function", func(t *testing.T) {
		var codes []int64
		mustCall(t, c, mod, "garbage_pointers", &codes)
		for i, code := range codes {
			if code > 0 {
				t.Fatalf("call %d returned %d: a garbage request was served", i, code)
			}
		}
		t.Logf("%d garbage calls, all refused", len(codes))
	})
	t.Run("nesting without waiting stops at MaxTaskDepth", func(t *testing.T) {
		var n int
		mustCall(t, c, mod, "chain", &n, 100_000)
		ctx := ctxFor(t, testutil.HangGuard)
		eventually(t, testutil.HangGuard, func() bool {
			evs, _, _ := c.ListTasks(ctx, "failed")
			for _, e := range evs {
				if strings.Contains(e.Message, "tasks nest 51 deep, the limit is 50") {
					return true
				}
			}
			return false
		}, "no task failed at the depth limit")
	})
	var ok string
	mustCall(t, c, mod, "ok", &ok)
}

func kindOf(te *ray.TaskError) string {
	if te == nil {
		return ""
	}
	return te.Kind
}

func firstLine(s string) string { return strings.SplitN(s, "\n", 2)[0] }

// TestGrants: nothing by default; a directory within AllowedDirs and
// environment variables when a call asks; the grant shows in the events.
func TestGrants(t *testing.T) {
	allowed := t.TempDir()
	if err := os.WriteFile(filepath.Join(allowed, "data.txt"), []byte("hello"), 0o644); err != nil {
		t.Fatal(err)
	}
	h := testutil.StartHost(t, func(c *host.Config) { c.AllowedDirs = []string{allowed} })
	c := client.New(h.Addr())
	mod := testutil.Register(t, c, hostilePkg)
	ctx := ctxFor(t, testutil.HangGuard)

	refs, err := c.SubmitCall(ctx, client.Call{Module: mod, Function: "read_granted", Args: []any{"/data/data.txt"},
		Mounts: []client.Mount{{HostPath: allowed, GuestPath: "/data", ReadOnly: true}}, Env: map[string]string{"GREETING": "world"}})
	if err != nil {
		t.Fatal(err)
	}
	var got string
	if err := c.Get(ctx, refs[0], &got); err != nil || got != "hello world" {
		t.Fatalf("read_granted = %q, %v", got, err)
	}
	evs, _, _ := c.ListTasks(ctx, "")
	found := false
	for _, e := range evs {
		found = found || strings.Contains(e.Message, "grants: dir "+allowed+" at /data (ro); env GREETING;")
	}
	if !found {
		t.Error("the grant is not in the task's events")
	}

	outside := t.TempDir()
	_, err = c.SubmitCall(ctx, client.Call{Module: mod, Function: "read_granted", Args: []any{"/x"},
		Mounts: []client.Mount{{HostPath: outside, GuestPath: "/x"}}})
	if !errors.Is(err, client.ErrPermission) {
		t.Fatalf("mounting a directory outside AllowedDirs: %v", err)
	}
	var ok string
	mustCall(t, c, mod, "ok", &ok)
}

// TestMalformedRequests: each bad request gets its own code and message.
func TestMalformedRequests(t *testing.T) {
	h := testutil.StartHost(t, func(c *host.Config) { c.MaxMessageBytes = 8 << 20 })
	c := client.New(h.Addr())
	mod := testutil.Register(t, c, guestPkg)
	neg, five, badRetries := -1.0, 5, int32(-5)
	tests := []struct {
		name string
		do   func(ctx context.Context) error
		want error
		msg  string
	}{
		{"an ABI version the host does not speak", func(ctx context.Context) error {
			_, err := c.RegisterModule(ctx, moduleWithABI(2), "")
			return err
		}, client.ErrInvalidArgument, "speaks guest ABI v2, this host speaks v1"},
		{"a module with an empty memory (once crashed the worker)", func(ctx context.Context) error {
			_, err := c.RegisterModule(ctx, moduleWithABI(1, 0x05, 4, 1, 1, 0, 0), "")
			return err
		}, client.ErrInvalidArgument, "without a result"},
		{"an oversized message", func(ctx context.Context) error {
			_, err := c.Put(ctx, make([]byte, 9<<20))
			return err
		}, client.ErrTooLarge, ""},
		{"malformed JSON argument", func(ctx context.Context) error {
			_, err := c.SubmitCall(ctx, client.Call{Module: mod, Function: "add", Args: []any{json.RawMessage("{1"), 2}})
			return err
		}, client.ErrInvalidArgument, "not valid JSON"},
		{"negative CPUs", func(ctx context.Context) error {
			_, err := c.SubmitCall(ctx, client.Call{Module: mod, Function: "add", Args: []any{1, 2}, NumCPUs: &neg})
			return err
		}, client.ErrInvalidArgument, "num_cpus -1 is negative"},
		{"wrong num_returns", func(ctx context.Context) error {
			_, err := c.SubmitCall(ctx, client.Call{Module: mod, Function: "add", Args: []any{1, 2}, NumReturns: five})
			return err
		}, client.ErrInvalidArgument, "returns 1 values, num_returns is 5"},
		{"invalid max_retries", func(ctx context.Context) error {
			_, err := c.SubmitCall(ctx, client.Call{Module: mod, Function: "add", Args: []any{1, 2}, MaxRetries: &badRetries})
			return err
		}, client.ErrInvalidArgument, "max_retries -5"},
		{"memory limit over 4 GiB", func(ctx context.Context) error {
			_, err := c.SubmitCall(ctx, client.Call{Module: mod, Function: "add", Args: []any{1, 2}, MemoryLimitBytes: 5 << 30})
			return err
		}, client.ErrInvalidArgument, "memory limit"},
		{"bad environment variable", func(ctx context.Context) error {
			_, err := c.SubmitCall(ctx, client.Call{Module: mod, Function: "add", Args: []any{1, 2}, Env: map[string]string{"A=B": "c"}})
			return err
		}, client.ErrInvalidArgument, "environment variable"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.do(ctxFor(t, testutil.HangGuard))
			if !errors.Is(err, tt.want) || !strings.Contains(err.Error(), tt.msg) {
				t.Fatalf("error %v; want %v saying %q", err, tt.want, tt.msg)
			}
			stillServes(t, c, mod)
		})
	}
}

// moduleWithABI is a hand-assembled module that exports the ABI's two
// functions, its version export returning v; extra is appended as raw
// sections (in order, so only ids > 3 and < 7 fit before the exports).
func moduleWithABI(v byte, extra ...byte) []byte {
	section := func(id byte, body ...byte) []byte { return append([]byte{id, byte(len(body))}, body...) }
	name := func(s string) []byte { return append([]byte{byte(len(s))}, s...) }
	var m []byte
	m = append(m, 0, 'a', 's', 'm', 1, 0, 0, 0)
	m = append(m, section(1, 2, 0x60, 0, 1, 0x7f, 0x60, 1, 0x7f, 1, 0x7f)...) // () -> i32, (i32) -> i32
	m = append(m, section(3, 2, 0, 1)...)
	m = append(m, extra...)
	exports := []byte{2}
	exports = append(append(exports, name("rayhost_abi_version")...), 0, 0)
	exports = append(append(exports, name("rayhost_invoke")...), 0, 1)
	m = append(m, section(7, exports...)...)
	m = append(m, section(10, 2, 4, 0, 0x41, v, 0x0b, 4, 0, 0x41, 0, 0x0b)...)
	return m
}

func TestAuthentication(t *testing.T) {
	h := testutil.StartHost(t, func(c *host.Config) { c.Token = "s3cret" })
	mod := testutil.Register(t, client.New(h.Addr(), client.WithToken("s3cret")), guestPkg)
	tests := []struct {
		name  string
		token string
		ok    bool
	}{
		{"no token", "", false},
		{"wrong token", "guess", false},
		{"right token", "s3cret", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var opts []client.Option
			if tt.token != "" {
				opts = append(opts, client.WithToken(tt.token))
			}
			c := client.New(h.Addr(), opts...)
			ctx := ctxFor(t, testutil.HangGuard)
			check := func(kind string, err error) {
				t.Helper()
				if tt.ok && err != nil {
					t.Fatalf("%s with the right token: %v", kind, err)
				}
				if !tt.ok && !errors.Is(err, client.ErrUnauthenticated) {
					t.Fatalf("%s: %v, want ErrUnauthenticated", kind, err)
				}
			}
			_, err := c.Health(ctx)
			check("unary call", err)
			_, err = c.SubmitBatch(ctx, []client.Call{{Module: mod, Function: "add", Args: []any{1, 2}}})
			check("bidi streaming call", err)
			check("server streaming call", c.Run(ctx, mod, nil))
		})
	}
}

func TestTLS(t *testing.T) {
	dir := t.TempDir()
	pool := selfSigned(t, dir)
	h := testutil.StartHost(t, func(c *host.Config) {
		c.TLSCertFile, c.TLSKeyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	})
	if !strings.HasPrefix(h.URL(), "https://") {
		t.Fatalf("URL %s", h.URL())
	}
	c := client.New(h.Addr(), client.WithTLS(&tls.Config{RootCAs: pool}))
	mod := testutil.Register(t, c, guestPkg)
	ctx := ctxFor(t, testutil.HangGuard)
	refs, err := c.SubmitBatch(ctx, []client.Call{{Module: mod, Function: "add", Args: []any{40, 2}}})
	if err != nil {
		t.Fatal(err)
	}
	var got int
	if err := c.Get(ctx, refs[0][0], &got); err != nil || got != 42 {
		t.Fatalf("over TLS: %d, %v", got, err)
	}
	if _, err := client.New(h.Addr()).Health(ctx); err == nil {
		t.Fatal("plain HTTP to a TLS host worked")
	}
}

// selfSigned writes a certificate for 127.0.0.1 and its key into dir.
func selfSigned(t *testing.T, dir string) *x509.CertPool {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "rayhost test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, IsCA: true, BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	_ = os.WriteFile(filepath.Join(dir, "cert.pem"), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	_ = os.WriteFile(filepath.Join(dir, "key.pem"), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	cert, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return pool
}
