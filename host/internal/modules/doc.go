// Package modules keeps a host's registered WebAssembly modules and checks
// the calls made to them.
//
// A [Registry] stores each module's bytes in a file named by their sha256
// digest (so workers load it from there, and a restarted host still has
// it), refuses, before any compiling, a module too large, of too many
// functions or with too large a function body, caps the number of distinct
// modules, names modules, and has a [Compiler] (the host's workers) describe
// each one once: describing compiles it into the shared compilation cache
// and lists its functions. The description is kept beside the module file
// and read back, checked as a fresh one, when the module is registered or
// looked up again after a restart (descriptions.go).
//
// A [Policy] checks a call against its module and the host's limits: the
// function exists and gets its number of arguments, the resources and
// limits are valid and within the host's maximums ([Policy.Prepare]); the
// directories and environment variables it is granted are within what the
// host allows ([Policy.CheckGrants]), and a child task asks for no more
// than its parent holds ([Attenuate]).
//
//	reg, err := modules.New(modules.Config{Dir: dir}, compiler)
//	mod, err := reg.Register(ctx, wasm, "demo", false)
//	pol, err := modules.NewPolicy(modules.PolicyConfig{AllowedDirs: []string{"/srv/data"}})
//	p, err := pol.Prepare(modules.Call{Module: mod, Function: "add", NumArgs: 2, Resources: r})
//
// Errors wrap this package's sentinels; their messages keep the "host:"
// prefix the API has always answered with.
package modules
