//go:build !linux

package worker

import "github.com/tetratelabs/wazero/experimental"

// mmapAllocator is nil elsewhere: wazero's default allocator is used.
var mmapAllocator experimental.MemoryAllocator
