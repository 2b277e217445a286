package policies

import (
	"path/filepath"
	"testing"
)

func TestExamplesLoad(t *testing.T) {
	for _, name := range []string{"payments.yaml", "mcp-devops.yaml"} {
		t.Run(name, func(t *testing.T) {
			ps, errs := LoadPath(filepath.Join("examples", name))
			if errs != nil {
				t.Fatalf("load: %v", errs)
			}
			if ps.Metadata.Tenant == "" || len(ps.Tools) == 0 || len(ps.Agents) == 0 {
				t.Fatalf("model incomplete: %+v", ps)
			}
		})
	}
}
