package main

import (
	"bytes"
	"strings"
	"testing"
)

func section(id byte, payload ...byte) []byte {
	return append([]byte{id, byte(len(payload))}, payload...)
}

func str(s string) []byte { return append([]byte{byte(len(s))}, s...) }

func cat(parts ...[]byte) []byte { return bytes.Join(parts, nil) }

// tiny is a module with one imported function and two bodies of 4 and 6
// bytes (size prefix included), named the way the Go linker mangles names.
func tiny() []byte {
	imports := cat([]byte{1}, str("env"), str("f"), []byte{0, 0})
	code := cat([]byte{2}, []byte{3, 0, 0x01, 0x0b}, []byte{5, 0, 0x01, 0x01, 0x01, 0x0b})
	names := cat([]byte{2},
		[]byte{1}, str("github.com_a_b_c_d.__T_.f"),
		[]byte{2}, str("fmt.Sprintf"))
	nameSec := cat(str("name"), []byte{1, byte(len(names))}, names)
	return cat([]byte("\x00asm\x01\x00\x00\x00"),
		section(2, imports...),
		section(10, code...),
		section(0, nameSec...))
}

func TestParse(t *testing.T) {
	m, err := Parse(tiny())
	if err != nil {
		t.Fatal(err)
	}
	if m.Imported != 1 {
		t.Errorf("Imported = %d, want 1", m.Imported)
	}
	if len(m.Bodies) != 2 || m.Bodies[0] != 4 || m.Bodies[1] != 6 {
		t.Errorf("Bodies = %v, want [4 6]", m.Bodies)
	}
	got := m.CodeByPackage(NewPackages([]string{"github.com/a-b/c/d", "fmt"}))
	want := []PackageSize{{"fmt", 6, 1}, {"github.com/a-b/c/d", 4, 1}}
	if len(got) != len(want) {
		t.Fatalf("CodeByPackage = %v, want %v", got, want)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("CodeByPackage[%d] = %v, want %v", i, got[i], want[i])
		}
	}
	var out strings.Builder
	m.Report(&out, NewPackages(nil), 10)
	if !strings.Contains(out.String(), "custom:name") || !strings.Contains(out.String(), "fmt ") {
		t.Errorf("report lacks the name section or fmt:\n%s", out.String())
	}
}

func TestParseErrors(t *testing.T) {
	good := tiny()
	tests := []struct {
		name string
		in   []byte
		want string
	}{
		{"not wasm", []byte("\x7fELF...."), "bad magic"},
		{"section past end", cat(good[:8], []byte{10, 50, 1}), "runs past the end"},
		{"body past section", cat(good[:8], section(10, 1, 9, 0)), "section code: body 0"},
		{"truncated import", cat(good[:8], section(2, 1, 3, 'e')), "section import"},
		{"long leb", cat(good[:8], []byte{10, 0x80, 0x80, 0x80, 0x80, 0x80}), "longer than 5 bytes"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.in)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Parse error = %v, want it to contain %q", err, tt.want)
			}
		})
	}
}

func TestPackagesOf(t *testing.T) {
	p := NewPackages([]string{
		"github.com/aegis-mesh/aegis/engine",
		"github.com/aegis-mesh/aegis/engine/internal/x",
		"encoding/json",
	})
	tests := []struct{ name, want string }{
		{"github.com_aegis_mesh_aegis_engine.__compiler_.stmt", "github.com/aegis-mesh/aegis/engine"},
		{"github.com_aegis_mesh_aegis_engine_internal_x.F", "github.com/aegis-mesh/aegis/engine/internal/x"},
		{"encoding_json.__decodeState_.object", "encoding/json"},
		{"internal_strconv.ParseInt", "internal_strconv"}, // not in the list: mangled prefix
		{"type_.eq.runtime._panic", "type_"},
		{"slices.pdqsortCmpFunc_go.shape.struct___encoding_json.v_reflect.Value", "slices"},
		{"_rt0_wasm_wasip1_lib", "_rt0_wasm_wasip1_lib"},
	}
	for _, tt := range tests {
		if got := p.Of(tt.name); got != tt.want {
			t.Errorf("Of(%q) = %q, want %q", tt.name, got, tt.want)
		}
	}
}
