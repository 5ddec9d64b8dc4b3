// Package launch starts a host's worker processes.
//
// A [Launcher] starts one worker and returns its [Process]: a socket to
// it, and ways to kill it and wait for it. [ProcessLauncher] starts
// `rayhost worker` processes, each with one end of a Unix socket pair as
// file descriptor 3, an empty environment, and the OS confinement the
// platform offers (Linux: user and network namespaces, falling back to
// less when the machine refuses them); they die with the host however it
// dies. [InProcessLauncher] runs workers as goroutines, for tests.
//
// A worker reports the confinement it got with its Ready frame;
// [Confinement] keeps the last report.
//
//	l := &launch.ProcessLauncher{Command: []string{"/usr/local/bin/rayhost", "worker"}}
//	p, err := l.Launch(ctx, launch.WorkerOptions{CacheDir: dir, Confine: true})
//	conn := ipc.NewConn(p.Conn())
package launch
