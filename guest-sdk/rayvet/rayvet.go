// Package rayvet checks the arguments of rayhost's Remote calls before run
// time.
//
// Remote takes its arguments as ...any, because each one may be a value of
// the parameter's type or an ObjectRef of that type (the task then gets
// the value). Go's generics cannot say "T or ObjectRef[T]" without making
// the caller wrap every argument, so the compiler does not catch a wrong
// argument; the SDK reports it only when Remote runs. Analyzer catches it
// at build time instead: for each Remote call on a function, generator,
// actor class or actor method registered with the SDK (ray.Func0…Func8,
// FuncN, Func0x2…Func8x3, Gen0…Gen8, Actor0…Actor8, Method0…Method8x3,
// GenMethod0…GenMethod8), it finds the registration, reads the parameter types
// from its type arguments, and reports
//
//   - a wrong number of arguments,
//   - an argument whose type does not fit its parameter,
//   - an ObjectRef[T] whose T does not fit its parameter.
//
// "Fits" is the SDK's run-time rule: assignable to the parameter's type,
// or both numeric (numbers travel as JSON, so 3 fits an int64 or a float64
// parameter); untyped nil fits pointers, slices, maps and interfaces.
//
// The registration is found when the receiver of Remote is the
// registration call itself, a variable of the same package whose every
// assignment is a registration (package-level or local), an exported
// package-level variable of an imported package that is one (its
// signature travels as an analysis fact), or such a value's Options(…).
// Other receivers (a function parameter, a struct field, a function's
// result) and arguments whose type is only known at run time (an
// interface, a type parameter, args...) are not checked, and neither is
// whether a concrete type implements an interface parameter of another
// package.
//
// Use Analyzer in any go/analysis driver, or Run (what `rayhost vet` runs).
package rayvet

import (
	"context"
	"fmt"
	"go/ast"
	"go/constant"
	"go/token"
	"go/types"
	"io"
	"os"
	"path/filepath"
	"strings"

	"golang.org/x/tools/go/analysis"
	"golang.org/x/tools/go/analysis/checker"
	"golang.org/x/tools/go/packages"
)

// SDKPath is the import path of the SDK whose calls Analyzer checks.
const SDKPath = "github.com/rayhost/rayhost/guest-sdk/ray"

// Analyzer reports Remote calls whose arguments do not fit the remote
// function's parameters.
var Analyzer = &analysis.Analyzer{
	Name: "rayvet",
	Doc:  "check the arguments of rayhost Remote calls against the remote function's parameter types",
	URL:  "https://pkg.go.dev/" + "github.com/rayhost/rayhost/guest-sdk/rayvet",
	Run:  run,

	FactTypes: []analysis.Fact{new(remoteFact)},
}

// registration returns, for a registering function of the SDK, the
// indices of its type arguments that are the remote call's parameters;
// variadic marks FuncN, whose one type argument is the type of every
// argument. The SDK's constructors are named by shape (shapes_gen.go):
// Func<n>, Func<n>x<r> and Gen<n> take their n arguments' types first;
// Actor<n>, Method<n>, Method<n>x<r> and GenMethod<n> the actor's state
// type S first, then theirs.
func registration(name string) (params []int, variadic, ok bool) {
	if name == "FuncN" {
		return []int{0}, true, true
	}
	first := 0
	var rest string
	switch {
	case strings.HasPrefix(name, "GenMethod"):
		rest, first = strings.TrimPrefix(name, "GenMethod"), 1
	case strings.HasPrefix(name, "Method"):
		rest, first = strings.TrimPrefix(name, "Method"), 1
	case strings.HasPrefix(name, "Actor"):
		rest, first = strings.TrimPrefix(name, "Actor"), 1
	case strings.HasPrefix(name, "Func"):
		rest = strings.TrimPrefix(name, "Func")
	case strings.HasPrefix(name, "Gen"):
		rest = strings.TrimPrefix(name, "Gen")
	default:
		return nil, false, false
	}
	if len(rest) == 0 || rest[0] < '0' || rest[0] > '9' {
		return nil, false, false
	}
	n := int(rest[0] - '0')
	switch suffix := rest[1:]; suffix {
	case "":
	case "x2", "x3":
		if strings.HasPrefix(name, "Gen") || strings.HasPrefix(name, "Actor") {
			return nil, false, false
		}
	default:
		return nil, false, false
	}
	for i := range n {
		params = append(params, first+i)
	}
	return params, false, true
}

// remoteTypes are the SDK types whose Remote method takes ...any, and how
// many typed parameters come before the variadic ones.
var remoteTypes = map[string]int{
	"Function": 0, "Function2": 0, "Function3": 0, "GeneratorFunction": 0, "ActorClass": 0,
	"ActorMethod": 1, "ActorMethod2": 1, "ActorMethod3": 1, "ActorGeneratorMethod": 1, // Remote(h ActorHandle[S], args ...any)
}

// signature is what a Remote call must match.
type signature struct {
	name     string // the registered name, if a constant
	register string // Func2, Gen1…
	params   []param
	variadic bool
}

// remoteFact is exported for each package-level variable that holds a
// registered remote function, so that packages importing it check its
// Remote calls too.
type remoteFact struct {
	Name, Register string
	Variadic       bool
	Params         []paramDesc
}

func (*remoteFact) AFact() {}

func (f *remoteFact) String() string {
	types := make([]string, len(f.Params))
	for i, p := range f.Params {
		types[i] = p.Display
	}
	return fmt.Sprintf("remote %s %q(%s)", f.Register, f.Name, strings.Join(types, ", "))
}

type pass struct {
	*analysis.Pass
	assigns map[*types.Var][]ast.Expr // nil entry: an assignment we cannot follow
}

func run(p *analysis.Pass) (any, error) {
	if !importsSDK(p.Pkg) {
		return nil, nil
	}
	ps := &pass{Pass: p, assigns: map[*types.Var][]ast.Expr{}}
	for _, f := range p.Files {
		ast.Inspect(f, ps.collect)
	}
	for _, f := range p.Files {
		ast.Inspect(f, func(n ast.Node) bool {
			if call, ok := n.(*ast.CallExpr); ok {
				ps.checkCall(call)
			}
			return true
		})
	}
	scope := p.Pkg.Scope()
	for _, name := range scope.Names() {
		v, ok := scope.Lookup(name).(*types.Var)
		if !ok || !v.Exported() || p.Pkg.Name() == "main" {
			continue // other packages cannot refer to it
		}
		if s := ps.signatureOfVar(v, 0); s != nil {
			f := &remoteFact{Name: s.name, Register: s.register, Variadic: s.variadic}
			for _, prm := range s.params {
				f.Params = append(f.Params, prm.desc())
			}
			p.ExportObjectFact(v, f)
		}
	}
	return nil, nil
}

func importsSDK(pkg *types.Package) bool {
	if pkg.Path() == SDKPath {
		return false // the SDK's own code forwards ...any on purpose
	}
	for _, imp := range pkg.Imports() {
		if imp.Path() == SDKPath {
			return true
		}
	}
	return false
}

// collect records every assignment to a variable of the package.
func (p *pass) collect(n ast.Node) bool {
	add := func(lhs ast.Expr, rhs ast.Expr) {
		id, ok := ast.Unparen(lhs).(*ast.Ident)
		if !ok {
			return
		}
		obj := p.TypesInfo.Defs[id]
		if obj == nil {
			obj = p.TypesInfo.Uses[id]
		}
		if v, ok := obj.(*types.Var); ok {
			p.assigns[v] = append(p.assigns[v], rhs)
		}
	}
	switch n := n.(type) {
	case *ast.ValueSpec:
		for i, name := range n.Names {
			switch {
			case len(n.Values) == len(n.Names):
				add(name, n.Values[i])
			case len(n.Values) > 0:
				add(name, nil)
			}
		}
	case *ast.AssignStmt:
		for i, lhs := range n.Lhs {
			if len(n.Lhs) == len(n.Rhs) && (n.Tok == token.ASSIGN || n.Tok == token.DEFINE) {
				add(lhs, n.Rhs[i])
			} else {
				add(lhs, nil)
			}
		}
	case *ast.UnaryExpr: // &v: it may be assigned through the pointer
		if n.Op == token.AND {
			add(n.X, nil)
		}
	case *ast.RangeStmt:
		if n.Key != nil {
			add(n.Key, nil)
		}
		if n.Value != nil {
			add(n.Value, nil)
		}
	}
	return true
}

// sdkObject reports whether obj is the SDK's object called name.
func sdkObject(obj types.Object) (string, bool) {
	if obj == nil || obj.Pkg() == nil || obj.Pkg().Path() != SDKPath {
		return "", false
	}
	return obj.Name(), true
}

// calleeIdent returns the identifier naming the function of call.
func calleeIdent(call *ast.CallExpr) *ast.Ident {
	fun := ast.Unparen(call.Fun)
	if ix, ok := fun.(*ast.IndexExpr); ok { // ray.Func1[int, int](…)
		fun = ix.X
	}
	if ix, ok := fun.(*ast.IndexListExpr); ok {
		fun = ix.X
	}
	switch f := fun.(type) {
	case *ast.Ident:
		return f
	case *ast.SelectorExpr:
		return f.Sel
	}
	return nil
}

// signatureOf finds the registration that made the value of e.
func (p *pass) signatureOf(e ast.Expr, depth int) *signature {
	if depth > 16 {
		return nil
	}
	switch e := ast.Unparen(e).(type) {
	case *ast.CallExpr:
		id := calleeIdent(e)
		if id == nil {
			return nil
		}
		obj := p.TypesInfo.Uses[id]
		name, ok := sdkObject(obj)
		if !ok {
			return nil
		}
		if fn, ok := obj.(*types.Func); ok && name == "Options" {
			if sel, ok := ast.Unparen(e.Fun).(*ast.SelectorExpr); ok && fn.Signature().Recv() != nil {
				return p.signatureOf(sel.X, depth+1)
			}
			return nil
		}
		params, variadic, ok := registration(name)
		if !ok {
			return nil
		}
		inst, ok := p.TypesInfo.Instances[id]
		if !ok {
			return nil
		}
		s := &signature{register: name, variadic: variadic}
		for _, i := range params {
			if i >= inst.TypeArgs.Len() {
				return nil
			}
			s.params = append(s.params, param{t: inst.TypeArgs.At(i)})
		}
		nameArg := 0
		if strings.HasPrefix(name, "Method") || strings.HasPrefix(name, "GenMethod") {
			nameArg = 1
		}
		if len(e.Args) > nameArg {
			if tv, ok := p.TypesInfo.Types[e.Args[nameArg]]; ok && tv.Value != nil && tv.Value.Kind() == constant.String {
				s.name = constant.StringVal(tv.Value)
			}
		}
		return s
	case *ast.Ident:
		return p.signatureOfVar(p.TypesInfo.Uses[e], depth)
	case *ast.SelectorExpr:
		return p.signatureOfVar(p.TypesInfo.Uses[e.Sel], depth)
	}
	return nil
}

func (p *pass) signatureOfVar(obj types.Object, depth int) *signature {
	v, ok := obj.(*types.Var)
	if !ok || v.IsField() {
		return nil
	}
	if v.Pkg() != p.Pkg {
		var f remoteFact
		if !p.ImportObjectFact(v, &f) {
			return nil
		}
		s := &signature{name: f.Name, register: f.Register, variadic: f.Variadic}
		for _, d := range f.Params {
			s.params = append(s.params, param{d: d})
		}
		return s
	}
	exprs := p.assigns[v]
	var found *signature
	for _, rhs := range exprs {
		if rhs == nil {
			return nil
		}
		s := p.signatureOf(rhs, depth+1)
		if s == nil || (found != nil && !sameParams(found, s)) {
			return nil
		}
		found = s
	}
	return found
}

func sameParams(a, b *signature) bool {
	if a.variadic != b.variadic || len(a.params) != len(b.params) {
		return false
	}
	for i, x := range a.params {
		y := b.params[i]
		if x.t != nil && y.t != nil {
			if !types.Identical(x.t, y.t) {
				return false
			}
		} else if x.desc().Type != y.desc().Type {
			return false
		}
	}
	return true
}

// Run loads the packages that patterns name, relative to dir, as guests
// (GOOS=wasip1 GOARCH=wasm), runs Analyzer on them, and writes each
// finding to w as "file:line:col: message", with file relative to dir when
// it lies inside it. It returns the number of findings; err reports
// packages that do not load or type-check.
func Run(ctx context.Context, dir string, patterns []string, w io.Writer) (findings int, err error) {
	if len(patterns) == 0 {
		patterns = []string{"."}
	}
	cfg := &packages.Config{
		Context: ctx,
		Mode:    packages.LoadAllSyntax | packages.NeedModule,
		Dir:     dir,
		Env:     append(os.Environ(), "GOOS=wasip1", "GOARCH=wasm"),
	}
	pkgs, err := packages.Load(cfg, patterns...)
	if err != nil {
		return 0, fmt.Errorf("rayvet: loading %s: %w", strings.Join(patterns, " "), err)
	}
	var loadErrs []string
	packages.Visit(pkgs, nil, func(pkg *packages.Package) {
		for _, e := range pkg.Errors {
			loadErrs = append(loadErrs, e.Error())
		}
	})
	if len(loadErrs) > 0 {
		return 0, fmt.Errorf("rayvet: %s", strings.Join(loadErrs, "\n"))
	}
	if len(pkgs) == 0 {
		return 0, fmt.Errorf("rayvet: no packages match %s", strings.Join(patterns, " "))
	}
	graph, err := checker.Analyze([]*analysis.Analyzer{Analyzer}, pkgs, nil)
	if err != nil {
		return 0, fmt.Errorf("rayvet: %w", err)
	}
	absDir, _ := filepath.Abs(dir)
	for _, act := range graph.Roots {
		if act.Err != nil {
			return findings, fmt.Errorf("rayvet: %s: %w", act.Package.PkgPath, act.Err)
		}
		for _, d := range act.Diagnostics {
			pos := act.Package.Fset.Position(d.Pos)
			if rel, err := filepath.Rel(absDir, pos.Filename); err == nil && !strings.HasPrefix(rel, "..") {
				pos.Filename = rel
			}
			if _, err := fmt.Fprintf(w, "%s:%d:%d: %s\n", pos.Filename, pos.Line, pos.Column, d.Message); err != nil {
				return findings, err
			}
			findings++
		}
	}
	return findings, nil
}
