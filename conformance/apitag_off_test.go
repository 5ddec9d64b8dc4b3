//go:build !conformance_api

package conformance

// apiTag reports whether the API specification tests (build tag
// conformance_api) are compiled in.
const apiTag = false
