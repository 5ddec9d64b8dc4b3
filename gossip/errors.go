package gossip

import "errors"

// Sentinel errors. Functions wrap them with more detail; check them with
// errors.Is.
var (
	// ErrInvalidConfig is returned by New, MemoryNetwork.Member and ParseKey
	// for a configuration that cannot work (a missing name, a bad address, a
	// key of the wrong size, ...).
	ErrInvalidConfig = errors.New("gossip: invalid config")
	// ErrTagsTooLarge is returned when the encoded tags (API address and
	// resources) exceed Serf's limit of 512 bytes. New checks it before it
	// binds anything, UpdateResources before it publishes.
	ErrTagsTooLarge = errors.New("gossip: encoded tags exceed 512 bytes")
	// ErrJoin is returned by Join when no seed answered before the context
	// ended. It wraps the last error seen.
	ErrJoin = errors.New("gossip: no seed answered")
	// ErrEncryption is returned by Join when a seed and this member do not
	// share an encryption key: different keys, or one side encrypts and the
	// other does not.
	ErrEncryption = errors.New("gossip: encryption key mismatch")
	// ErrDuplicateName is returned by Join when the cluster already has an
	// alive member with this member's name at another address. The existing
	// member is not disturbed.
	ErrDuplicateName = errors.New("gossip: node name already in use")
	// ErrKeyRequired is returned by New for a member that gossips beyond
	// this machine (a bind or advertise address that is not loopback)
	// without EncryptKey: anyone who reached its port could join the
	// cluster and publish an API address of its choosing.
	ErrKeyRequired = errors.New("gossip: an encryption key is required beyond loopback")
	// ErrClosed is returned by operations on a member that has left or been
	// closed.
	ErrClosed = errors.New("gossip: membership closed")
)
