// Package gossip keeps track of which rayhost hosts are in the cluster, by
// Serf gossip (SWIM failure detection over UDP, state sync over TCP).
//
// Each host embeds one member. A member publishes its name (the host's ID),
// the address of its Connect API and its total resources, and learns those
// of the others; a crash is noticed within a few probe intervals (about 5 s
// with [LANTimings], half a second with [FastTimings]).
//
// [Membership] is the interface the host depends on. [Serf] is the real
// implementation ([New]); [Memory] is an in-memory twin on a
// [MemoryNetwork], with the same events and errors, for tests. Both report
// changes on [Membership.Events] as one [Event] per member, and list members
// with [Membership.Members].
//
// Joining refuses what retrying cannot fix: a seed with another encryption
// key ([ErrEncryption]) and a name that is already alive in the cluster
// ([ErrDuplicateName]); the member already there keeps running.
//
// Usage:
//
//	cfg := gossip.DefaultConfig()
//	cfg.NodeName = hostID
//	cfg.APIAddr = "10.0.0.7:7070"
//	cfg.Resources = map[string]float64{"CPU": 8, "GPU": 1}
//	cfg.EncryptKey, err = gossip.ParseKey(os.Getenv("RAYHOST_GOSSIP_KEY"))
//	if err != nil {
//		return err
//	}
//	cfg.SnapshotPath = filepath.Join(dataDir, "serf.snapshot")
//	cfg.Logger = logger
//	m, err := gossip.New(cfg)
//	if err != nil {
//		return err
//	}
//	defer m.Close() // a no-op after Leave
//	if _, err := m.Join(ctx, []string{"10.0.0.5:7946"}); err != nil {
//		return err
//	}
//	go func() {
//		for {
//			select {
//			case ev := <-m.Events():
//				logger.Info("member changed", "host", ev.Member.Name, "event", ev.Kind.String())
//			case <-done: // Events is never closed
//				return
//			}
//		}
//	}()
//	...
//	return m.Leave(ctx) // the others see StatusLeft, not StatusFailed
package gossip
