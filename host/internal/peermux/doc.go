// Package peermux carries the task attempts two hosts run for each other
// (links) over one PeerService.Execute stream, and batches their frames.
//
// The owner of a task opens a link per attempt with [Mux.Open] (an actor's
// creation and its calls share one); the host that runs it takes each new
// link through [Config.Accept]. Each side then sees its links as the
// per-attempt streams the peer protocol had before version 4: frames in
// order each way ([Link.Send], [Link.Receive]), and an end ([Link.Close]).
//
// Sending queues the frame; one writer per mux sends everything queued
// while it was sending the last batch as one ipc.TypePeerBatch frame
// (group commit: no timer, so a lone frame goes at once, and a thousand
// queued together go as one). One reader decodes each batch
// (peerwire.DecodeBatch) and hands its frames to their links' inboxes, so
// a link whose reader is slow holds up no other. When the stream fails,
// every link ends with its error.
//
//	m := peermux.New(stream, peermux.Config{})
//	go m.Run()
//	l, err := m.Open(ipc.TypePeerExec, spec.Encode())
//	typ, payload, err := l.Receive()
//	l.Close(nil, "")
package peermux
