// Package guard is the front door of a host's API: an http.Handler in front
// of the Connect handlers that checks a call's credentials from its headers
// alone, before any byte of its body is read or decompressed, rate-limits
// RegisterModule per client address, and bounds how long reading a
// one-message body may take; and a listener that caps the open connections.
//
// The TaskService takes "Authorization: Bearer <token>" (when the host has a
// token) or a cluster member's credential; the PeerService takes only a
// member's credential, never the users' token. A member's credential is an
// HMAC of the address it calls, keyed by the cluster secret ([PeerKey],
// [PeerCredential]); the host that answers proves it holds the secret too
// with a header of its own ([PeerProof]).
//
// Every call it lets through carries its principal on its context
// ([PrincipalOf]): "member@<ip>" or "client@<ip>". The API's client
// sessions belong to a principal.
//
//	g, err := guard.New(guard.Config{Token: token, PeerKey: guard.PeerKey(gossipKey, token), Self: addr})
//	srv := &http.Server{Handler: g.Wrap(mux)}
//	ln = guard.CapListener(ln, 4096, nil)
package guard
