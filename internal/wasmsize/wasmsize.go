// Command wasmsize attributes the bytes of a Go-built wasm module to Go
// packages, so that work on the filter's size (issue 3) starts from numbers.
//
//	go run ./internal/wasmsize [-n 30] [-pkg ./filter] module.wasm
//
// It prints the size of every section, then the code section's function
// bodies summed per package, largest first. Function names come from the
// "name" custom section, which the Go linker drops under -ldflags=-s: build
// the module to measure without -s -w (the code and data are the same
// bytes either way). Data segments carry no names, so data is reported as
// one total; `go tool nm -size` on a native build of the same package
// attributes most of it (type descriptors, pclntab, tables).
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
)

func main() {
	top := flag.Int("n", 30, "packages (or functions) to list")
	funcs := flag.String("funcs", "", "list the largest functions of this import path instead (\"all\": of every package)")
	pkg := flag.String("pkg", "./filter", "package whose wasip1 dependencies name the module's functions (go list -deps); empty to skip")
	flag.Usage = func() {
		fmt.Fprintln(flag.CommandLine.Output(), "usage: wasmsize [-n N] [-pkg ./filter] module.wasm")
		flag.PrintDefaults()
	}
	flag.Parse()
	if flag.NArg() != 1 {
		flag.Usage()
		os.Exit(2)
	}
	if err := run(os.Stdout, flag.Arg(0), *pkg, *funcs, *top); err != nil {
		fmt.Fprintln(os.Stderr, "wasmsize:", err)
		os.Exit(1)
	}
}

func run(w io.Writer, file, pkg, funcs string, top int) error {
	b, err := os.ReadFile(file)
	if err != nil {
		return err
	}
	m, err := Parse(b)
	if err != nil {
		return fmt.Errorf("%s: %w", file, err)
	}
	var paths []string
	if pkg != "" {
		cmd := exec.Command("go", "list", "-deps", pkg)
		cmd.Env = append(cmd.Environ(), "GOOS=wasip1", "GOARCH=wasm")
		cmd.Stderr = os.Stderr
		out, err := cmd.Output()
		if err != nil {
			return fmt.Errorf("go list -deps %s: %w", pkg, err)
		}
		paths = strings.Fields(string(out))
	}
	if funcs != "" {
		m.ReportFuncs(w, NewPackages(paths), funcs, top)
		return nil
	}
	m.Report(w, NewPackages(paths), top)
	return nil
}

// Section is one top-level section of the module.
type Section struct {
	ID   byte
	Name string // the section's kind, or the custom section's own name
	Size int    // payload bytes, without the id and size header
}

// Module is what the report needs from a parsed module.
type Module struct {
	Total    int
	Sections []Section
	// Bodies holds each defined function's body size (with its size
	// prefix), indexed by function index minus the imported functions.
	Bodies []int
	// Imported is the number of imported functions, which come first in
	// the function index space.
	Imported int
	// Names maps function index to name; empty when the module has no
	// name section.
	Names map[int]string
}

var sectionNames = [...]string{"custom", "type", "import", "function", "table", "memory", "global", "export", "start", "element", "code", "data", "datacount"}

// Parse reads the section headers, the import and code sections and the
// function-name subsection; everything else is only measured.
func Parse(b []byte) (*Module, error) {
	if len(b) < 8 || string(b[:4]) != "\x00asm" {
		return nil, errors.New("not a wasm module (bad magic)")
	}
	m := &Module{Total: len(b), Names: map[int]string{}}
	r := &reader{b: b, off: 8}
	for r.off < len(b) {
		id, err := r.byte()
		if err != nil {
			return nil, err
		}
		size, err := r.u32()
		if err != nil {
			return nil, fmt.Errorf("section %d header: %w", id, err)
		}
		if size > uint32(len(b)-r.off) {
			return nil, fmt.Errorf("section %d at offset %d: size %d runs past the end", id, r.off, size)
		}
		body := &reader{b: b[r.off : r.off+int(size)]}
		r.off += int(size)
		s := Section{ID: id, Size: int(size)}
		if int(id) < len(sectionNames) {
			s.Name = sectionNames[id]
		} else {
			s.Name = fmt.Sprintf("unknown(%d)", id)
		}
		switch id {
		case 0:
			name, err := body.name()
			if err != nil {
				return nil, fmt.Errorf("custom section name: %w", err)
			}
			s.Name = "custom:" + name
			if name == "name" {
				if err := m.readNames(body); err != nil {
					return nil, fmt.Errorf("section custom:name: %w", err)
				}
			}
		case 2:
			if err := m.readImports(body); err != nil {
				return nil, fmt.Errorf("section import: %w", err)
			}
		case 10:
			if err := m.readCode(body); err != nil {
				return nil, fmt.Errorf("section code: %w", err)
			}
		}
		m.Sections = append(m.Sections, s)
	}
	return m, nil
}

func (m *Module) readImports(r *reader) error {
	n, err := r.u32()
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		if _, err := r.name(); err != nil {
			return fmt.Errorf("import %d module: %w", i, err)
		}
		if _, err := r.name(); err != nil {
			return fmt.Errorf("import %d name: %w", i, err)
		}
		kind, err := r.byte()
		if err != nil {
			return err
		}
		switch kind {
		case 0: // function: type index
			m.Imported++
			_, err = r.u32()
		case 1: // table: reftype, limits
			if _, err = r.byte(); err == nil {
				err = r.limits()
			}
		case 2: // memory: limits
			err = r.limits()
		case 3: // global: valtype, mutability
			if _, err = r.byte(); err == nil {
				_, err = r.byte()
			}
		default:
			return fmt.Errorf("import %d: unknown kind %d", i, kind)
		}
		if err != nil {
			return fmt.Errorf("import %d: %w", i, err)
		}
	}
	return nil
}

func (m *Module) readCode(r *reader) error {
	n, err := r.u32()
	if err != nil {
		return err
	}
	for i := uint32(0); i < n; i++ {
		start := r.off
		size, err := r.u32()
		if err != nil {
			return fmt.Errorf("body %d: %w", i, err)
		}
		if size > uint32(len(r.b)-r.off) {
			return fmt.Errorf("body %d: size %d runs past the section", i, size)
		}
		r.off += int(size)
		m.Bodies = append(m.Bodies, r.off-start)
	}
	return nil
}

// readNames reads subsection 1 (function names) and skips the others.
func (m *Module) readNames(r *reader) error {
	for r.off < len(r.b) {
		id, err := r.byte()
		if err != nil {
			return err
		}
		size, err := r.u32()
		if err != nil {
			return err
		}
		if size > uint32(len(r.b)-r.off) {
			return fmt.Errorf("subsection %d: size %d runs past the section", id, size)
		}
		sub := &reader{b: r.b[r.off : r.off+int(size)]}
		r.off += int(size)
		if id != 1 {
			continue
		}
		n, err := sub.u32()
		if err != nil {
			return err
		}
		for i := uint32(0); i < n; i++ {
			idx, err := sub.u32()
			if err != nil {
				return fmt.Errorf("function name %d: %w", i, err)
			}
			name, err := sub.name()
			if err != nil {
				return fmt.Errorf("function name %d: %w", i, err)
			}
			m.Names[int(idx)] = name
		}
	}
	return nil
}

// PackageSize is the code bytes attributed to one package.
type PackageSize struct {
	Package string
	Bytes   int
	Funcs   int
}

// CodeByPackage sums function bodies per package, largest first. Bodies
// without a name are counted under "?".
func (m *Module) CodeByPackage(pkgs *Packages) []PackageSize {
	sums := map[string]*PackageSize{}
	for i, size := range m.Bodies {
		pkg := "?"
		if name, ok := m.Names[m.Imported+i]; ok {
			pkg = pkgs.Of(name)
		}
		p := sums[pkg]
		if p == nil {
			p = &PackageSize{Package: pkg}
			sums[pkg] = p
		}
		p.Bytes += size
		p.Funcs++
	}
	out := make([]PackageSize, 0, len(sums))
	for _, p := range sums {
		out = append(out, *p)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Bytes != out[j].Bytes {
			return out[i].Bytes > out[j].Bytes
		}
		return out[i].Package < out[j].Package
	})
	return out
}

// Packages attributes mangled function names to import paths. The Go
// linker writes each name with every byte outside [0-9A-Za-z_.] replaced by
// "_" (cmd/link/internal/wasm, nameRegexp), so
// "github.com/a-b/c.(*T).f" becomes "github.com_a_b_c.__T_.f". Standard
// library paths have no dots and end at the name's first dot; module paths
// do have dots, so they are recognized by their mangled form.
type Packages struct {
	mangled map[string]string // mangled import path -> import path
}

// NewPackages knows the given import paths (typically `go list -deps`).
func NewPackages(paths []string) *Packages {
	p := &Packages{mangled: map[string]string{}}
	for _, path := range paths {
		p.mangled[mangle(path)] = path
	}
	return p
}

func mangle(s string) string {
	b := []byte(s)
	for i, c := range b {
		if !(c == '.' || c == '_' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			b[i] = '_'
		}
	}
	return string(b)
}

// Of returns the import path a function name belongs to: the longest known
// package whose mangled path is followed by a dot, else the text before the
// first dot (right for the standard library and for linker-made names such
// as "type_.eq.T", which group under "type_").
func (p *Packages) Of(name string) string {
	best := ""
	for i := 0; i < len(name); i++ {
		if name[i] != '.' {
			continue
		}
		if path, ok := p.mangled[name[:i]]; ok && len(path) > len(best) {
			best = path
		}
	}
	if best != "" {
		return best
	}
	if i := strings.IndexByte(name, '.'); i >= 0 {
		return name[:i]
	}
	return name
}

// Report prints the section table and the top packages by code size.
func (m *Module) Report(w io.Writer, pkgs *Packages, top int) {
	fmt.Fprintf(w, "module %d bytes\n\n%-24s %10s\n", m.Total, "section", "bytes")
	for _, s := range m.Sections {
		fmt.Fprintf(w, "%-24s %10d\n", s.Name, s.Size)
	}
	if len(m.Names) == 0 {
		fmt.Fprintln(w, "\nno name section: build without -ldflags=-s to attribute code to packages")
		return
	}
	sizes := m.CodeByPackage(pkgs)
	code := 0
	for _, p := range sizes {
		code += p.Bytes
	}
	fmt.Fprintf(w, "\n%-52s %10s %6s %6s\n", "package (code)", "bytes", "%code", "funcs")
	for i, p := range sizes {
		if i == top {
			rest, funcs := 0, 0
			for _, q := range sizes[i:] {
				rest += q.Bytes
				funcs += q.Funcs
			}
			fmt.Fprintf(w, "%-52s %10d %5.1f%% %6d\n", fmt.Sprintf("(%d more)", len(sizes)-i), rest, 100*float64(rest)/float64(code), funcs)
			break
		}
		fmt.Fprintf(w, "%-52s %10d %5.1f%% %6d\n", p.Package, p.Bytes, 100*float64(p.Bytes)/float64(code), p.Funcs)
	}
}

// ReportFuncs prints the largest function bodies of one package ("all":
// of every package), to find generic instantiations and big tables of code.
func (m *Module) ReportFuncs(w io.Writer, pkgs *Packages, pkg string, top int) {
	type fn struct {
		name string
		size int
	}
	var fns []fn
	for i, size := range m.Bodies {
		name := m.Names[m.Imported+i]
		if pkg == "all" || pkgs.Of(name) == pkg {
			fns = append(fns, fn{name, size})
		}
	}
	sort.Slice(fns, func(i, j int) bool { return fns[i].size > fns[j].size })
	for i, f := range fns {
		if i == top {
			break
		}
		fmt.Fprintf(w, "%10d %s\n", f.size, f.name)
	}
}

type reader struct {
	b   []byte
	off int
}

var errShort = errors.New("unexpected end of input")

func (r *reader) byte() (byte, error) {
	if r.off >= len(r.b) {
		return 0, errShort
	}
	c := r.b[r.off]
	r.off++
	return c, nil
}

// u32 reads an unsigned LEB128 value of at most five bytes.
func (r *reader) u32() (uint32, error) {
	var v uint32
	for shift := 0; shift < 35; shift += 7 {
		c, err := r.byte()
		if err != nil {
			return 0, err
		}
		v |= uint32(c&0x7f) << shift
		if c&0x80 == 0 {
			return v, nil
		}
	}
	return 0, fmt.Errorf("LEB128 at offset %d longer than 5 bytes", r.off)
}

func (r *reader) name() (string, error) {
	n, err := r.u32()
	if err != nil {
		return "", err
	}
	if n > uint32(len(r.b)-r.off) {
		return "", errShort
	}
	s := string(r.b[r.off : r.off+int(n)])
	r.off += int(n)
	return s, nil
}

func (r *reader) limits() error {
	flags, err := r.byte()
	if err != nil {
		return err
	}
	if _, err := r.u32(); err != nil {
		return err
	}
	if flags&1 != 0 {
		_, err = r.u32()
	}
	return err
}
