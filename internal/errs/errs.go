// Package errs holds Errorf: fmt.Errorf behind a call the compiler does not
// inline.
//
// fmt.Errorf is written so that it can be inlined, and the packages the
// filter links call it at almost 300 sites, nearly all of them on error
// paths. In the filter's wasm module each inlined copy cost bytes for no
// speed that matters: about 38 kB in all (issue 3, module size). Packages
// outside the filter's path keep calling fmt.Errorf directly.
package errs

import "fmt"

// Errorf is fmt.Errorf. go vet checks its format strings as it checks
// fmt.Errorf's, and %w wraps as it does there.
//
//go:noinline
func Errorf(format string, a ...any) error {
	return fmt.Errorf(format, a...)
}
