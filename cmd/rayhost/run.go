package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/rayhost/rayhost/client"
	"github.com/rayhost/rayhost/host"
)

func newRunCmd() *cobra.Command {
	var cf *clientFlags
	var hf *hostFlags
	var progress string
	var gf *grantFlags
	var vetFirst bool
	cmd := &cobra.Command{
		Use:   "run [flags] <module.wasm | ./go/package>",
		Short: "run a module's driver, on an embedded host or on --address",
		Long: `Run builds a Go package for wasip1 (or reads a .wasm file), registers it and runs its
driver (the function given to ray.Main), printing the driver's output and its tasks' output
prefixed with the task's function and host, as Ray does.

Without --address it starts a private host in this process, like ray.init(): its data is
temporary, and the compilation cache is kept in your cache directory so the next run of the
same module starts warm. With --address it runs on that host and its cluster.

While the driver runs, the count of tasks it submitted, finished and failed is shown on
stderr: updated in place on a terminal, as a line every few seconds otherwise.

A driver holds only the directories and environment variables given with --mount and --env
(within the host's --allow-dir), and its tasks may be granted those or less, never more.`,
		Example: `  rayhost run ./examples/retrieve
  rayhost run --num-cpus 8 ./examples/pi
  rayhost run --address 10.0.0.1:6380 app.wasm
  rayhost run --allow-dir /srv --mount /srv/data:/data:ro ./app   # the driver may grant /data to its tasks`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			stderr := cmd.ErrOrStderr()
			mounts, env, err := gf.parse()
			if err != nil {
				return err
			}
			if vetFirst && !strings.HasSuffix(a[0], ".wasm") {
				if err := checkPackagePath(a[0]); err != nil {
					return err
				}
				if err := vet(ctx, a[:1], stderr); err != nil {
					return err
				}
			}
			wasm, err := loadModule(ctx, a[0], stderr)
			if err != nil {
				return err
			}
			if cf.address == "" {
				h, cleanup, err := embeddedHost(hf)
				if err != nil {
					return err
				}
				defer cleanup()
				cf.address = h.Addr()
			}
			c, base, err := cf.client()
			if err != nil {
				return err
			}
			defer c.Close()
			mod, err := register(ctx, c, base, wasm, a[0])
			if err != nil {
				return err
			}
			if !mod.HasMain {
				return fmt.Errorf("%s has no driver: register one with ray.Main (func init() { ray.Main(run) }), or call one function with rayhost submit", a[0])
			}
			p := newPrefixer(cmd.OutOrStdout(), stderr)
			opts := []client.RunOption{client.WithGrants(mounts, env)}
			meter := newMeter(stderr, progress)
			if meter != nil {
				opts = append(opts, client.WithProgress(meter.update))
			}
			err = c.Run(ctx, mod.Digest, func(l client.LogLine) {
				meter.clear()
				p.print(l)
				meter.redraw()
			}, opts...)
			meter.done()
			p.flush()
			if err != nil {
				return explain(ctx, err, c, base, true)
			}
			return nil
		},
	}
	fs := cmd.Flags()
	fs.SortFlags = false
	cf = bindClientFlags(fs, "")
	fs.Lookup("address").Usage = "host to run on: HOST, HOST:PORT or a URL (default: start an embedded host)"
	fs.StringVar(&progress, "progress", "auto", "show task counts while the driver runs: auto (on a terminal, or a line every 5 s otherwise), always, or never")
	gf = bindGrantFlags(fs)
	fs.BoolVar(&vetFirst, "vet", true, "check the package's Remote calls (rayhost vet) before building it")
	hf = bindHostFlags(fs, "", "warn", false)
	fs.Lookup("data-dir").Usage = "embedded host: keep objects and modules here (default: a temporary directory)"
	return annotateEnv(cmd)
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

// register registers wasm (read or built from what) on the host.
func register(ctx context.Context, c *client.Client, base string, wasm []byte, what string) (*client.Module, error) {
	mod, err := c.RegisterModule(ctx, wasm, "")
	if errors.Is(err, client.ErrInvalidArgument) {
		return nil, fmt.Errorf("%w: %s is not a rayhost guest: a guest imports github.com/rayhost/rayhost/guest-sdk/ray and registers remote functions (see `go doc github.com/rayhost/rayhost/guest-sdk/ray`)\n(%w)", errNotGuest, what, err)
	}
	return mod, explain(ctx, err, c, base, false)
}

// errNotGuest says a package cannot be built as a guest.
var errNotGuest = errors.New("not a guest package")

// loadModule reads a .wasm file, or builds a Go package for wasip1 as a
// reactor and reads the result, saying what it builds on w.
func loadModule(ctx context.Context, arg string, w io.Writer) ([]byte, error) {
	if strings.HasSuffix(arg, ".wasm") {
		b, err := os.ReadFile(arg)
		if err != nil {
			return nil, fmt.Errorf("reading the module: %w", err)
		}
		return b, nil
	}
	if err := checkPackagePath(arg); err != nil {
		return nil, err
	}
	out, err := os.CreateTemp("", "rayhost-*.wasm")
	if err != nil {
		return nil, err
	}
	out.Close()
	defer os.Remove(out.Name())
	cmd := exec.CommandContext(ctx, "go", "build", "-buildmode=c-shared", "-o", out.Name(), arg)
	cmd.Env = append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	s := startStatus(w, fmt.Sprintf("building %s for wasip1 (GOOS=wasip1 GOARCH=wasm)", arg))
	err = cmd.Run()
	s.stop(err == nil)
	if err != nil {
		if errors.Is(err, exec.ErrNotFound) {
			return nil, fmt.Errorf("building %s needs the go command on PATH (or give a .wasm file): %w", arg, err)
		}
		return nil, buildError(arg, stderr.String(), err)
	}
	return os.ReadFile(out.Name())
}

// checkPackagePath catches a directory named without ./, which the go
// command takes for a standard-library path.
func checkPackagePath(arg string) error {
	if strings.HasPrefix(arg, ".") || filepath.IsAbs(arg) {
		if dir, _ := strings.CutSuffix(arg, "/..."); !isDir(dir) {
			return fmt.Errorf("no Go package %s: there is no such directory (name a package directory with ./, as in rayhost run ./path/to/pkg)", arg)
		}
		return nil
	}
	if fi, err := os.Stat(arg); err == nil && fi.IsDir() {
		return usagef("%s is a directory: name a package directory with ./ (rayhost run ./%s), as the go command wants", arg, filepath.ToSlash(arg))
	}
	return nil
}

// buildError says why a package did not build, naming the fix where the
// go command's message is a known one.
func buildError(arg, stderr string, err error) error {
	msg := strings.TrimSpace(stderr)
	switch {
	case strings.Contains(msg, "requires exactly one main package") || strings.Contains(msg, "is not a main package") ||
		strings.Contains(msg, "non-main package"):
		return fmt.Errorf("%w: %s is not package main. A guest is a main package that registers remote functions with github.com/rayhost/rayhost/guest-sdk/ray (see `go doc github.com/rayhost/rayhost/guest-sdk/ray`)\n%s", errNotGuest, arg, msg)
	case strings.Contains(msg, "is not in std") || strings.Contains(msg, "cannot find package") || strings.Contains(msg, "no required module provides") ||
		strings.Contains(msg, "directory not found") || strings.Contains(msg, "cannot find module providing"):
		return fmt.Errorf("no Go package %s: name a package directory with ./ (rayhost run ./path/to/pkg) or an import path your go.mod provides\n%s", arg, msg)
	}
	return fmt.Errorf("building %s for wasip1: %v\n%s", arg, err, msg)
}

// status shows that something slow is under way: on a terminal a line
// with the time so far, redrawn in place; otherwise a line now and one at
// the end.
type status struct {
	w      io.Writer
	what   string
	start  time.Time
	tty    bool
	stopCh chan struct{}
	wg     sync.WaitGroup
}

func startStatus(w io.Writer, what string) *status {
	s := &status{w: w, what: what, start: time.Now(), tty: isTerminal(w), stopCh: make(chan struct{})}
	if !s.tty {
		fmt.Fprintf(w, "rayhost: %s\n", what)
		return s
	}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		t := time.NewTicker(200 * time.Millisecond)
		defer t.Stop()
		for {
			fmt.Fprintf(w, "\r\x1b[Krayhost: %s… %.1fs", s.what, time.Since(s.start).Seconds())
			select {
			case <-t.C:
			case <-s.stopCh:
				return
			}
		}
	}()
	return s
}

func (s *status) stop(ok bool) {
	close(s.stopCh)
	s.wg.Wait()
	d := time.Since(s.start).Seconds()
	if s.tty {
		fmt.Fprint(s.w, "\r\x1b[K")
	}
	if ok && (s.tty || d >= 1) {
		fmt.Fprintf(s.w, "rayhost: %s: done in %.1fs\n", s.what, d)
	}
}

// prefixer prints guest output line by line: the driver's as is, a task's
// prefixed with its function and host, as Ray does.
type prefixer struct {
	mu             sync.Mutex
	stdout, stderr io.Writer
	partial        map[string]*bytes.Buffer
	prefix         map[string]string
}

func newPrefixer(stdout, stderr io.Writer) *prefixer {
	return &prefixer{stdout: stdout, stderr: stderr, partial: map[string]*bytes.Buffer{}, prefix: map[string]string{}}
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
			p.prefix[key] = fmt.Sprintf("(%s task=%s host=%s) ", l.Function, l.TaskID[:min(8, len(l.TaskID))], l.Host)
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
	w := p.stdout
	if stream == "stderr" {
		w = p.stderr
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
