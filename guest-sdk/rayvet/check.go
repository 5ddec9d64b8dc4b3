// This file holds the check of one Remote call: the argument count, and the
// fit rule applied to each argument against a parameter of this package
// (its type) or of another (its description, from a fact).

package rayvet

import (
	"fmt"
	"go/ast"
	"go/types"
)

// param is a parameter's type: t for a registration in this package, or
// only its description d for one imported through a remoteFact.
type param struct {
	t types.Type
	d paramDesc
}

// paramDesc describes a parameter type well enough to apply the fit rule
// to it from another package (facts cross address spaces as gob).
type paramDesc struct {
	Type       string // types.TypeString with package paths
	Underlying string // the same for its underlying type
	Display    string // with package names, for messages
	Named      bool   // a defined (or predeclared) type
	Number     bool
	NilOK      bool
	Unknown    bool // an interface or type parameter: the dynamic type decides
}

func describe(t types.Type) paramDesc {
	return paramDesc{
		Type: types.TypeString(t, nil), Underlying: types.TypeString(t.Underlying(), nil),
		Display: types.TypeString(t, (*types.Package).Name),
		Named:   isNamed(t), Number: isNumber(t), NilOK: fitsNil(t),
		Unknown: types.IsInterface(t) || hasTypeParam(t),
	}
}

func isNamed(t types.Type) bool {
	switch t := types.Unalias(t).(type) {
	case *types.Named:
		return true
	case *types.Basic:
		return t.Info()&types.IsUntyped == 0
	}
	return false
}

func (prm param) desc() paramDesc {
	if prm.t != nil {
		return describe(prm.t)
	}
	return prm.d
}

// checkCall checks call if it is x.Remote(…) on an SDK type.
func (p *pass) checkCall(call *ast.CallExpr) {
	sel, ok := ast.Unparen(call.Fun).(*ast.SelectorExpr)
	if !ok || sel.Sel.Name != "Remote" {
		return
	}
	fn, ok := p.TypesInfo.Uses[sel.Sel].(*types.Func)
	if !ok {
		return
	}
	recv := fn.Signature().Recv()
	if recv == nil {
		return
	}
	named := namedOf(recv.Type())
	if named == nil {
		return
	}
	skip, ok := remoteTypes[named.Obj().Name()]
	if _, sdk := sdkObject(named.Obj()); !ok || !sdk {
		return
	}
	if call.Ellipsis.IsValid() {
		return // args...: the count is known only at run time
	}
	s := p.signatureOf(sel.X, 0)
	if s == nil {
		return
	}
	what := s.register
	if s.name != "" {
		what = fmt.Sprintf("%q (ray.%s)", s.name, s.register)
	}
	args := call.Args[min(skip, len(call.Args)):]
	if !s.variadic && len(args) != len(s.params) {
		pos := call.Rparen
		if len(args) > len(s.params) {
			pos = args[len(s.params)].Pos()
		}
		p.Reportf(pos, "Remote of %s: %s for %s", what, plural(len(args), "argument"), plural(len(s.params), "parameter"))
		return
	}
	for i, a := range args {
		want := s.params[min(i, len(s.params)-1)]
		if msg := p.misfit(a, want); msg != "" {
			p.Reportf(a.Pos(), "Remote of %s: argument %d: %s", what, i+1, msg)
		}
	}
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	return fmt.Sprintf("%d %ss", n, word)
}

func namedOf(t types.Type) *types.Named {
	if ptr, ok := types.Unalias(t).(*types.Pointer); ok {
		t = ptr.Elem()
	}
	n, _ := types.Unalias(t).(*types.Named)
	return n
}

// misfit says why argument a does not fit a parameter of type want, or ""
// when it fits or its type is known only at run time.
func (p *pass) misfit(a ast.Expr, want param) string {
	tv, ok := p.TypesInfo.Types[a]
	if !ok || tv.Type == nil {
		return ""
	}
	got := tv.Type
	if tv.IsNil() {
		if p.fitsNil(want) {
			return ""
		}
		return fmt.Sprintf("nil for a parameter of type %s", p.paramString(want))
	}
	if b, ok := got.(*types.Basic); ok && b.Info()&types.IsUntyped != 0 {
		got = types.Default(got) // what the conversion to any makes of a constant
	}
	if n := namedOf(got); n != nil && n.Obj().Name() == "ObjectRef" && n.TypeArgs().Len() == 1 {
		if _, sdk := sdkObject(n.Obj()); sdk && !isPointer(got) {
			elem := n.TypeArgs().At(0)
			if hasTypeParam(elem) || p.fits(elem, want) {
				return ""
			}
			return fmt.Sprintf("%s for a parameter of type %s", p.typeString(got), p.paramString(want))
		}
	}
	if types.IsInterface(got) || hasTypeParam(got) {
		return "" // the dynamic type decides
	}
	if p.fits(got, want) {
		return ""
	}
	w := p.paramString(want)
	return fmt.Sprintf("%s for a parameter of type %s (want %s or ray.ObjectRef[%s])", p.typeString(got), w, w, w)
}

func (p *pass) paramString(w param) string {
	if w.t != nil {
		return p.typeString(w.t)
	}
	return w.d.Display
}

func (p *pass) fitsNil(w param) bool {
	if w.t != nil {
		return fitsNil(w.t)
	}
	return w.d.NilOK || w.d.Unknown
}

// fits applies the fit rule to a parameter of this package (types) or of
// another (its description: the same rule, on type strings).
func (p *pass) fits(got types.Type, w param) bool {
	if w.t != nil {
		return fits(got, w.t)
	}
	d := w.d
	switch {
	case d.Unknown, types.TypeString(got, nil) == d.Type, isNumber(got) && d.Number:
		return true
	}
	// Assignable: identical underlying types, at most one of them named.
	return types.TypeString(got.Underlying(), nil) == d.Underlying && !(isNamed(got) && d.Named)
}

func (p *pass) typeString(t types.Type) string {
	return types.TypeString(t, func(pkg *types.Package) string {
		if pkg == p.Pkg {
			return ""
		}
		return pkg.Name()
	})
}

func isPointer(t types.Type) bool {
	_, ok := types.Unalias(t).(*types.Pointer)
	return ok
}

func hasTypeParam(t types.Type) bool {
	_, ok := types.Unalias(t).(*types.TypeParam)
	return ok
}

// fits mirrors the SDK's run-time rule (guest-sdk/ray/api.go): got fits
// want if it is assignable to it, or if both are numbers.
func fits(got, want types.Type) bool {
	if hasTypeParam(want) {
		return true
	}
	if types.AssignableTo(got, want) {
		return true
	}
	return isNumber(got) && isNumber(want)
}

func fitsNil(want types.Type) bool {
	switch types.Unalias(want).Underlying().(type) {
	case *types.Pointer, *types.Slice, *types.Map, *types.Interface:
		return true
	}
	return hasTypeParam(want)
}

// isNumber: the kinds the SDK's isNumber lists (not complex, not uintptr).
func isNumber(t types.Type) bool {
	b, ok := t.Underlying().(*types.Basic)
	if !ok {
		return false
	}
	switch b.Kind() {
	case types.Int, types.Int8, types.Int16, types.Int32, types.Int64,
		types.Uint, types.Uint8, types.Uint16, types.Uint32, types.Uint64,
		types.Float32, types.Float64:
		return true
	}
	return false
}
