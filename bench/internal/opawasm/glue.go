package opawasm

// OPA's modules import their memory and host functions from "env". wazero's
// host-module builder cannot define a memory, so a few bytes of wasm stand
// in as "env": they define the memory and re-export the host functions,
// which live in a Go host module named hostModule.

const hostModule = "aegis_opa_host"

// hostFuncs are the env imports OPA modules may have, with their parameter
// counts (all i32; opa_abort returns nothing, the builtins return an i32).
var hostFuncs = []struct {
	name   string
	params int
}{
	{"opa_abort", 1},
	{"opa_println", 1},
	{"opa_builtin0", 2},
	{"opa_builtin1", 3},
	{"opa_builtin2", 4},
	{"opa_builtin3", 5},
	{"opa_builtin4", 6},
}

// glueModule encodes the "env" module: one type per host function, the
// imports, one memory of minPages (no maximum: the runtime's limit
// applies), and exports "memory" plus every host function by its name.
func glueModule(minPages uint32) []byte {
	const i32 = 0x7f
	var types, imports, memory, exports []byte

	types = uleb(types, uint32(len(hostFuncs)))
	for _, f := range hostFuncs {
		types = append(types, 0x60)
		types = uleb(types, uint32(f.params))
		for range f.params {
			types = append(types, i32)
		}
		if f.name == "opa_abort" || f.name == "opa_println" {
			types = append(types, 0)
		} else {
			types = append(types, 1, i32)
		}
	}

	imports = uleb(imports, uint32(len(hostFuncs)))
	for i, f := range hostFuncs {
		imports = name(imports, hostModule)
		imports = name(imports, f.name)
		imports = append(imports, 0x00) // function
		imports = uleb(imports, uint32(i))
	}

	memory = append(memory, 1, 0x00) // one memory, min only
	memory = uleb(memory, minPages)

	exports = uleb(exports, uint32(len(hostFuncs)+1))
	exports = name(exports, "memory")
	exports = append(exports, 0x02, 0) // memory 0
	for i, f := range hostFuncs {
		exports = name(exports, f.name)
		exports = append(exports, 0x00) // function
		exports = uleb(exports, uint32(i))
	}

	out := []byte{0x00, 'a', 's', 'm', 1, 0, 0, 0}
	out = section(out, 1, types)
	out = section(out, 2, imports)
	out = section(out, 5, memory)
	out = section(out, 7, exports)
	return out
}

func section(out []byte, id byte, body []byte) []byte {
	out = append(out, id)
	out = uleb(out, uint32(len(body)))
	return append(out, body...)
}

func name(out []byte, s string) []byte {
	out = uleb(out, uint32(len(s)))
	return append(out, s...)
}

func uleb(out []byte, v uint32) []byte {
	for {
		b := byte(v & 0x7f)
		v >>= 7
		if v == 0 {
			return append(out, b)
		}
		out = append(out, b|0x80)
	}
}
