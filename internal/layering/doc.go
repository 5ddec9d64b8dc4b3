// Package layering holds only a test: it checks who may import whom among
// rayhost's packages (the server never imports the client or the guest
// SDK; the client never imports the guest SDK; the guest links no
// Connect).
package layering
