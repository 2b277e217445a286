package server

import (
	"context"
	"log/slog"
	"net/http"
	"os"
	"reflect"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/aegis-mesh/aegis/controlplane/config"
	"github.com/aegis-mesh/aegis/controlplane/db"
	"github.com/aegis-mesh/aegis/controlplane/db/dbtest"
	"github.com/aegis-mesh/aegis/controlplane/xds"
)

// muxPatterns lists the patterns registered on mux. ServeMux has no
// listing API, so this reads its routing index by reflection (read-only).
// If a Go release renames those fields, the test fails loudly below
// instead of passing with an empty list.
func muxPatterns(t *testing.T, mux *http.ServeMux) []string {
	t.Helper()
	idx := reflect.ValueOf(mux).Elem().FieldByName("index")
	if !idx.IsValid() {
		t.Fatal("http.ServeMux has no index field any more: update muxPatterns")
	}
	seen := map[string]bool{}
	add := func(p reflect.Value) {
		str := p.Elem().FieldByName("str")
		if !str.IsValid() {
			t.Fatal("http pattern has no str field any more: update muxPatterns")
		}
		seen[str.String()] = true
	}
	segs := idx.FieldByName("segments")
	for it := segs.MapRange(); it.Next(); {
		for i := 0; i < it.Value().Len(); i++ {
			add(it.Value().Index(i))
		}
	}
	multis := idx.FieldByName("multis")
	for i := 0; i < multis.Len(); i++ {
		add(multis.Index(i))
	}
	out := make([]string, 0, len(seen))
	for p := range seen {
		out = append(out, p)
	}
	sort.Strings(out)
	return out
}

func TestOpenAPIMatchesRoutes(t *testing.T) {
	t.Parallel()
	d := dbtest.NewDSN(t, db.SQLite)
	s, err := New(context.Background(), Config{
		Settings: config.Config{Listen: "127.0.0.1:0", XDSListen: "127.0.0.1:0", Database: d, DataDir: t.TempDir(), PlainHTTP: true},
		Logger:   slog.New(slog.DiscardHandler),
		Extend:   Standard(StandardOptions{}),
		XDS:      &XDSOptions{Wasm: []byte("\x00asm\x01\x00\x00\x00"), WasmURL: "http://127.0.0.1:1/v1/filter.wasm", ControlPlane: xds.Endpoint{Host: "127.0.0.1", Port: 1}},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	served := map[string]bool{}
	for _, p := range muxPatterns(t, s.Mux()) {
		method, path, ok := strings.Cut(p, " ")
		if !ok {
			t.Errorf("route %q has no method: every route names one", p)
			continue
		}
		served[strings.ToLower(method)+" "+path] = true
	}
	if len(served) < 50 {
		t.Fatalf("found only %d routes: the mux reflection is broken", len(served))
	}

	data, err := os.ReadFile("../openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		OpenAPI string                          `yaml:"openapi"`
		Paths   map[string]map[string]yaml.Node `yaml:"paths"`
		Extra   map[string]any                  `yaml:",inline"`
	}
	if err := yaml.Unmarshal(data, &doc); err != nil {
		t.Fatalf("openapi.yaml: %v", err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.") {
		t.Fatalf("openapi version %q", doc.OpenAPI)
	}
	documented := map[string]bool{}
	for path, ops := range doc.Paths {
		for method := range ops {
			switch method {
			case "get", "put", "post", "delete", "patch", "head", "options":
				documented[method+" "+path] = true
			case "parameters", "summary", "description":
			default:
				t.Errorf("openapi.yaml: %s: unknown key %q", path, method)
			}
		}
	}
	for r := range served {
		if !documented[r] {
			t.Errorf("served but not in openapi.yaml: %s", r)
		}
	}
	for r := range documented {
		if !served[r] {
			t.Errorf("in openapi.yaml but not served: %s", r)
		}
	}
}
