// Package workerpool is a host's worker processes: it starts them through
// a [launch.Launcher], waits for their Ready, keeps the idle ones (last in,
// first out, so the warmest process runs the next task), reads their
// frames and hands them to a [Handler], stops workers idle too long beyond
// the warm pool, and replaces warm workers that die.
//
// The pool knows nothing of tasks: which worker runs what, memory held,
// actors, are the Handler's, kept in [Worker].Value. It decides only about
// processes: [Pool.Start], [Pool.Need] and [Pool.Spare] start them within
// Config.Max; [Pool.Take] (or [Pool.TakeBest], the best rated) and [Pool.Idle] move them off and onto the idle
// list; [Pool.Reap] (run by a background reaper every Config.ReapEvery, on
// Config.Clock) stops those idle for longer than Config.IdleTTL
// beyond Config.Warm+1.
//
// A worker's life:
//
//	Start ─► launching ──Ready──► hello ──Idle──► idle ──Reap──► stopping
//	             │                  │            │  ▲                │
//	        StartFailed       Ready returns    Take Idle             │
//	                                │            ▼  │                │
//	                                └──────────► busy                │
//	                                                                 ▼
//	      hello, busy, idle or stopping ──── the process exits ───► gone: Exited
//
// Launching and hello count in [Stats].Starting; busy, idle and stopping in
// Stats.Live.
//
// Locks: the pool has its own lock and never calls the Handler, launches,
// or writes to a worker with it held. A host calls the pool while holding
// its own lock, and the Handler takes the host's lock: the lock order is
// host → pool, never the other way. [Pool.Close] runs Handler calls to
// their end, so call it without holding a lock the Handler takes.
//
// Usage:
//
//	p, err := workerpool.New(workerpool.DefaultConfig(launch.InProcessLauncher{}, handler))
//	if err != nil {
//		return err
//	}
//	defer p.Close(ctx)
//	_ = p.Start()          // the handler's Ready calls p.Idle(w)
//	if w, ok := p.Take(); ok {
//		err = w.Exec(&ipc.Exec{...}) // its frames reach handler.Frame
//	}
package workerpool
