// Package istio_test checks the WasmPlugin manifests against Istio's own API
// types: every document decodes into extensions.istio.io/v1alpha1 WasmPlugin
// with unknown fields refused, and keeps the settings Aegis depends on.
package istio_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	extv1alpha1 "istio.io/api/extensions/v1alpha1"
)

type manifest struct {
	APIVersion string         `yaml:"apiVersion"`
	Kind       string         `yaml:"kind"`
	Metadata   map[string]any `yaml:"metadata"`
	Spec       map[string]any `yaml:"spec"`
}

func manifests(t *testing.T) map[string][]manifest {
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests: %v", err)
	}
	out := map[string][]manifest{}
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(raw))
		dec.KnownFields(true)
		for {
			var m manifest
			err := dec.Decode(&m)
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: %v", f, err)
			}
			out[f] = append(out[f], m)
		}
	}
	return out
}

var hex64 = regexp.MustCompile(`^[0-9a-f]{64}$`)

func TestWasmPluginManifests(t *testing.T) {
	for f, ms := range manifests(t) {
		for _, m := range ms {
			t.Run(f, func(t *testing.T) {
				if m.APIVersion != "extensions.istio.io/v1alpha1" || m.Kind != "WasmPlugin" {
					t.Fatalf("apiVersion/kind = %s/%s", m.APIVersion, m.Kind)
				}
				js, err := json.Marshal(m.Spec)
				if err != nil {
					t.Fatal(err)
				}
				var wp extv1alpha1.WasmPlugin
				if err := (protojson.UnmarshalOptions{}).Unmarshal(js, &wp); err != nil {
					t.Fatalf("spec is not a WasmPlugin: %v", err)
				}
				if wp.GetFailStrategy() != extv1alpha1.FailStrategy_FAIL_CLOSE {
					t.Error("failStrategy must be FAIL_CLOSE")
				}
				if _, explicit := m.Spec["failStrategy"]; !explicit {
					t.Error("failStrategy must be written out, not left to the default")
				}
				if !hex64.MatchString(wp.GetSha256()) {
					t.Errorf("sha256 %q: want 64 lower-case hex digits", wp.GetSha256())
				}
				if u := wp.GetUrl(); !strings.HasPrefix(u, "https://") && !strings.HasPrefix(u, "oci://") {
					t.Errorf("url %q: want https:// or oci://", u)
				}
				if wp.GetSelector() == nil && len(wp.GetTargetRefs()) == 0 {
					t.Error("no selector or targetRefs: the plugin would apply to every workload in the namespace")
				}
				if wp.GetType() != extv1alpha1.PluginType_HTTP {
					t.Error("type must be HTTP")
				}
				env := map[string]extv1alpha1.EnvValueSource{}
				for _, e := range wp.GetVmConfig().GetEnv() {
					env[e.GetName()] = e.GetValueFrom()
				}
				for _, k := range []string{"AEGIS_BUNDLE_PUBLIC_KEY", "AEGIS_STATE_PUBLIC_KEY", "AEGIS_NODE_SIGNING_KEY"} {
					if _, ok := env[k]; !ok {
						t.Errorf("trust root %s not in vmConfig.env", k)
					}
				}
				pc := wp.GetPluginConfig().AsMap()
				for k := range pc {
					if strings.Contains(strings.ToLower(k), "key") {
						t.Errorf("pluginConfig field %q looks like a key: the trust root never travels in pluginConfig", k)
					}
				}
				cp, _ := pc["control_plane"].(map[string]any)
				if cp == nil || cp["cluster"] == "" {
					t.Error("pluginConfig.control_plane.cluster missing: approvals and audit need it")
				}
			})
		}
	}
}
