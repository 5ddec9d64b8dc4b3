// Package objdir is a host's object directory: the table of the objects
// the host owns or holds, which are still being computed and which are
// ready, where their bytes are (in memory, in the local store, on other
// hosts), who waits for them, and how their bytes are brought here from
// the hosts that hold them.
//
// A [Dir] keeps small values (up to Config.InlineLimit) in memory, so a Get
// or a dependent task never touches the disk, and writes them to the store
// behind the caller's back; once persisted they are dropped from memory,
// oldest first, when the cache is over Config.CacheBytes, and read from the
// store again. Larger values are written to the store behind their seal too,
// one at a time, read from memory until they are there and then only from
// the store; one freed before its turn is never written. Values whose bytes
// stay on another host are sealed as a [Held] value (codec [CodecHeld]):
// the Dir records the holders and fetches the bytes on first use.
//
// Objects of other hosts reach the Dir in two ways: a borrowed ObjectRef
// ([Dir.Borrow]: the owner is asked in the background until the object is
// ready) and a held value ([Dir.Fetch]: the bytes are pulled from a holder,
// or, if none has them, the owner is asked again and rebuilds it). Both go
// through [Peers], which the host implements over its peer connections
// (nil outside a cluster); the other side answers with its own Dir's
// [Dir.Locate] and [Dir.Serve]. The Dir knows nothing of the host, its
// tasks or the cluster: lineage reconstruction is Config.Rebuild.
//
// A failure that says where an object is rather than what it is (its
// owner cannot be reached, every copy is on hosts that are down) is never
// kept past the event that ends it: a borrower seals it provisionally and
// asks again (provisional.go), an owner works it out on every read. A
// restarted host still answers for its own objects (restart.go).
//
// The Dir has its own lock and never calls out (waiters, Peers, Rebuild,
// the store) while holding it.
//
// Usage:
//
//	d, err := objdir.New(objdir.DefaultConfig(store.NewMemory()))
//	if err != nil {
//		return err
//	}
//	defer d.Close()
//	d.Expect(id, task)                  // a task will make id
//	go d.Seal(ctx, id, abi.Value{Codec: abi.CodecJSON, Data: []byte("42")})
//	vals, err := d.Get(ctx, []ids.ObjectID{id}, -1, nil) // waits for it
package objdir
