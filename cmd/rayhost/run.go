package main

import (
	"bytes"
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/host"
)

func cmdRun(args []string) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	address := fs.String("address", "", "host to run on (default: start an embedded local host)")
	token := fs.String("token", os.Getenv("RAYHOST_TOKEN"), "the cluster token, with --address (default $RAYHOST_TOKEN)")
	tlsCA := fs.String("tls-ca", "", "with --address: talk HTTPS, trusting this CA certificate (PEM)")
	hf := bindHostFlags(fs, "", "warn", false)
	fs.Usage = func() {
		fmt.Fprintln(fs.Output(), "usage: rayhost run [flags] <module.wasm | ./go/package>")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		fs.Usage()
		return fmt.Errorf("run takes one module")
	}
	wasm, err := loadModule(fs.Arg(0))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	cf := &clientFlags{address: *address, token: *token, tlsCA: *tlsCA}
	if cf.address == "" {
		h, cleanup, err := embeddedHost(hf)
		if err != nil {
			return err
		}
		defer cleanup()
		cf = &clientFlags{address: h.Addr()}
	}
	c, err := cf.client()
	if err != nil {
		return err
	}
	mod, err := c.RegisterModule(ctx, wasm, "")
	if err != nil {
		return err
	}
	p := newPrefixer()
	err = c.Run(ctx, mod.Digest, p.print)
	p.flush()
	return err
}

// embeddedHost starts a private host for one run, like ray.init(): its data
// is temporary, but the compilation cache is kept in the user's cache
// directory so the next run of the same module starts warm.
func embeddedHost(hf *hostFlags) (*host.Host, func(), error) {
	cfg, err := hf.config()
	if err != nil {
		return nil, nil, err
	}
	tmp := cfg.DataDir == ""
	if tmp {
		if cfg.DataDir, err = os.MkdirTemp("", "rayhost-run-"); err != nil {
			return nil, nil, err
		}
		if dir, err := os.UserCacheDir(); err == nil {
			cfg.CacheDir = filepath.Join(dir, "rayhost", "wazero")
		}
	}
	cfg.ListenAddr = "127.0.0.1:0"
	h, err := host.New(cfg)
	if err != nil {
		if tmp {
			os.RemoveAll(cfg.DataDir)
		}
		return nil, nil, err
	}
	return h, func() {
		h.Close()
		if tmp {
			os.RemoveAll(cfg.DataDir)
		}
	}, nil
}

// loadModule reads a .wasm file, or builds a Go package for wasip1 as a
// reactor and reads the result.
func loadModule(arg string) ([]byte, error) {
	if strings.HasSuffix(arg, ".wasm") {
		return os.ReadFile(arg)
	}
	out, err := os.CreateTemp("", "rayhost-*.wasm")
	if err != nil {
		return nil, err
	}
	out.Close()
	defer os.Remove(out.Name())
	start := time.Now()
	cmd := exec.Command("go", "build", "-buildmode=c-shared", "-o", out.Name(), arg)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("building %s for wasip1: %v\n%s", arg, err, stderr.String())
	}
	if d := time.Since(start); d > 2*time.Second {
		fmt.Fprintf(os.Stderr, "rayhost: built %s in %.1fs\n", arg, d.Seconds())
	}
	return os.ReadFile(out.Name())
}

// prefixer prints guest output line by line: the driver's as is, a task's
// prefixed with its function and host, as Ray does.
type prefixer struct {
	mu      sync.Mutex
	partial map[string]*bytes.Buffer
	prefix  map[string]string
}

func newPrefixer() *prefixer {
	return &prefixer{partial: map[string]*bytes.Buffer{}, prefix: map[string]string{}}
}

func (p *prefixer) print(l client.LogLine) {
	p.mu.Lock()
	defer p.mu.Unlock()
	key := l.TaskID + "/" + l.Stream
	buf := p.partial[key]
	if buf == nil {
		buf = &bytes.Buffer{}
		p.partial[key] = buf
		if l.Function != "main" {
			p.prefix[key] = fmt.Sprintf("(%s task=%s host=%s) ", l.Function, l.TaskID[:8], l.Host)
		}
	}
	buf.Write(l.Data)
	for {
		line, err := buf.ReadBytes('\n')
		if err != nil {
			buf.Write(line) // keep the partial line for later
			return
		}
		p.emit(key, l.Stream, line)
	}
}

func (p *prefixer) emit(key, stream string, line []byte) {
	w := os.Stdout
	if stream == "stderr" {
		w = os.Stderr
	}
	fmt.Fprintf(w, "%s%s", p.prefix[key], line)
}

func (p *prefixer) flush() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for key, buf := range p.partial {
		if buf.Len() > 0 {
			stream := key[strings.LastIndexByte(key, '/')+1:]
			p.emit(key, stream, append(buf.Bytes(), '\n'))
		}
	}
}
