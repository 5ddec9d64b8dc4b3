package modules

import (
	"errors"
	"fmt"
)

var wasmMagic = []byte{0, 'a', 's', 'm', 1, 0, 0, 0}

// checkShape reads a module's section headers and refuses, before any
// compiling, one with more functions than MaxFunctions or a function body
// over MaxFunctionBodyBytes: compile time and memory grow with both.
func (r *Registry) checkShape(wasm []byte) error {
	funcs, largest, err := wasmShape(wasm)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidModule, err)
	}
	if m := r.cfg.MaxFunctions; m > 0 && funcs > m {
		return fmt.Errorf("%w: %d functions, the limit is %d (rayhost start --max-module-functions)", ErrInvalidModule, funcs, m)
	}
	if m := r.cfg.MaxFunctionBodyBytes; m > 0 && largest > m {
		return fmt.Errorf("%w: a function body of %d bytes, the limit is %d (rayhost start --max-function-body-bytes)", ErrInvalidModule, largest, m)
	}
	return nil
}

// wasmShape walks the sections of a Wasm binary (after the 8-byte header)
// and returns the number of functions it defines and imports, and the size
// of its largest function body.
func wasmShape(wasm []byte) (funcs, largest int, err error) {
	p := wasm[len(wasmMagic):]
	uleb := func() (uint64, error) {
		var v uint64
		for shift := 0; shift < 35; shift += 7 {
			if len(p) == 0 {
				return 0, errors.New("truncated")
			}
			b := p[0]
			p = p[1:]
			v |= uint64(b&0x7f) << shift
			if b&0x80 == 0 {
				return v, nil
			}
		}
		return 0, errors.New("bad LEB128 number")
	}
	for len(p) > 0 {
		id := p[0]
		p = p[1:]
		size, err := uleb()
		if err != nil || size > uint64(len(p)) {
			return 0, 0, fmt.Errorf("section %d: size past the end of the module", id)
		}
		body, rest := p[:size], p[size:]
		switch id {
		case 3: // function section: the defined functions' types
			p = body
			n, err := uleb()
			if err != nil {
				return 0, 0, fmt.Errorf("function section: %v", err)
			}
			funcs += int(n)
		case 2: // imports: count the imported functions too
			p = body
			n, err := uleb()
			if err != nil {
				return 0, 0, fmt.Errorf("import section: %v", err)
			}
			for range n {
				for range 2 { // module and field names
					l, err := uleb()
					if err != nil || l > uint64(len(p)) {
						return 0, 0, errors.New("import section: bad name")
					}
					p = p[l:]
				}
				if len(p) == 0 {
					return 0, 0, errors.New("import section: truncated")
				}
				kind := p[0]
				p = p[1:]
				switch kind {
				case 0: // func: type index
					funcs++
					_, err = uleb()
				case 1: // table: reftype, limits
					if len(p) == 0 {
						return 0, 0, errors.New("import section: truncated")
					}
					p = p[1:]
					err = skipLimits(&p, uleb)
				case 2: // memory: limits
					err = skipLimits(&p, uleb)
				case 3: // global: valtype, mutability
					if len(p) < 2 {
						return 0, 0, errors.New("import section: truncated")
					}
					p = p[2:]
				default:
					return 0, 0, fmt.Errorf("import section: unknown kind %d", kind)
				}
				if err != nil {
					return 0, 0, fmt.Errorf("import section: %v", err)
				}
			}
		case 10: // code section: one body per defined function
			p = body
			n, err := uleb()
			if err != nil {
				return 0, 0, fmt.Errorf("code section: %v", err)
			}
			for range n {
				l, err := uleb()
				if err != nil || l > uint64(len(p)) {
					return 0, 0, errors.New("code section: body past the end")
				}
				largest = max(largest, int(l))
				p = p[l:]
			}
		}
		p = rest
	}
	return funcs, largest, nil
}

func skipLimits(p *[]byte, uleb func() (uint64, error)) error {
	if len(*p) == 0 {
		return errors.New("truncated limits")
	}
	flags := (*p)[0]
	*p = (*p)[1:]
	if _, err := uleb(); err != nil {
		return err
	}
	if flags&1 != 0 {
		_, err := uleb()
		return err
	}
	return nil
}
