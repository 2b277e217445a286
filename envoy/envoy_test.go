// Package envoy_test checks the shipped Envoy configurations the way Envoy
// would read them: every YAML file parses into the v3 Bootstrap proto with
// unknown fields refused, every message validates with its generated
// protoc-gen-validate rules (including inside typed configs, which Validate
// does not enter by itself), and the Aegis-specific invariants hold.
package envoy_test

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bootstrapv3 "github.com/envoyproxy/go-control-plane/envoy/config/bootstrap/v3"
	wasmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/http/wasm/v3"
	hcmv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/filters/network/http_connection_manager/v3"
	wasmextv3 "github.com/envoyproxy/go-control-plane/envoy/extensions/wasm/v3"
	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/aegis-mesh/aegis/envoy/envoyconfig"
)

func loadBootstrap(t *testing.T, path string) *bootstrapv3.Bootstrap {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var doc any
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	js, err := json.Marshal(doc)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var b bootstrapv3.Bootstrap
	if err := (protojson.UnmarshalOptions{}).Unmarshal(js, &b); err != nil {
		t.Fatalf("%s: not an Envoy v3 bootstrap: %v", path, err)
	}
	return &b
}

func configFiles(t *testing.T) []string {
	files, err := filepath.Glob("*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no Envoy configs found: %v", err)
	}
	return files
}

func TestConfigsValidate(t *testing.T) {
	for _, f := range configFiles(t) {
		t.Run(f, func(t *testing.T) {
			b := loadBootstrap(t, f)
			if err := envoyconfig.ValidateDeep(b); err != nil {
				t.Fatalf("%s: %v", f, err)
			}
		})
	}
}

// aegisFilters returns every Aegis wasm filter configuration in b: inline
// typed configs and ECDS default configs.
func aegisFilters(t *testing.T, b *bootstrapv3.Bootstrap) []*wasmv3.Wasm {
	t.Helper()
	var out []*wasmv3.Wasm
	for _, l := range b.GetStaticResources().GetListeners() {
		for _, fc := range l.GetFilterChains() {
			for _, nf := range fc.GetFilters() {
				var hcm hcmv3.HttpConnectionManager
				if nf.GetTypedConfig() == nil || nf.GetTypedConfig().UnmarshalTo(&hcm) != nil {
					continue
				}
				for _, hf := range hcm.GetHttpFilters() {
					if hf.GetName() != "aegis" {
						continue
					}
					anyCfg := hf.GetTypedConfig()
					if cd := hf.GetConfigDiscovery(); cd != nil {
						anyCfg = cd.GetDefaultConfig()
						if !cd.GetApplyDefaultConfigWithoutWarming() {
							t.Errorf("listener %s: ECDS default config must apply without warming, or the listener waits for the control plane", l.GetName())
						}
					}
					var w wasmv3.Wasm
					if err := anyCfg.UnmarshalTo(&w); err != nil {
						t.Fatalf("listener %s: aegis filter is not a Wasm config: %v", l.GetName(), err)
					}
					out = append(out, &w)
				}
			}
		}
	}
	return out
}

func TestAegisFilterInvariants(t *testing.T) {
	for _, f := range configFiles(t) {
		t.Run(f, func(t *testing.T) {
			b := loadBootstrap(t, f)
			filters := aegisFilters(t, b)
			if len(filters) == 0 {
				t.Fatal("no aegis wasm filter")
			}
			for _, w := range filters {
				pc := w.GetConfig()
				// fail_open is what Envoy 1.33 reads; newer Envoy prefers
				// failure_policy. Neither may let calls through a broken filter.
				//lint:ignore SA1019 Envoy 1.33, our minimum, has only fail_open.
				if pc.GetFailOpen() || pc.GetFailurePolicy() == wasmextv3.FailurePolicy_FAIL_OPEN {
					t.Error("fail_open must be false: a broken filter must not let calls through")
				}
				env := pc.GetVmConfig().GetEnvironmentVariables()
				keys := map[string]bool{}
				for _, k := range env.GetHostEnvKeys() {
					keys[k] = true
				}
				for k := range env.GetKeyValues() {
					keys[k] = true
				}
				for _, k := range []string{"AEGIS_BUNDLE_PUBLIC_KEY", "AEGIS_STATE_PUBLIC_KEY", "AEGIS_NODE_SIGNING_KEY"} {
					if !keys[k] {
						t.Errorf("trust root %s not set through vm_config.environment_variables", k)
					}
				}
				var sv wrapperspb.StringValue
				if err := pc.GetConfiguration().UnmarshalTo(&sv); err != nil {
					t.Fatalf("configuration is not a StringValue: %v", err)
				}
				var plugin map[string]any
				if err := json.Unmarshal([]byte(sv.GetValue()), &plugin); err != nil {
					t.Fatalf("plugin configuration is not JSON: %v", err)
				}
				for k := range plugin {
					if strings.Contains(strings.ToLower(k), "key") {
						t.Errorf("plugin configuration field %q looks like a key: the trust root never travels with the configuration", k)
					}
				}
				maxBody := 1 << 20
				if lim, ok := plugin["limits"].(map[string]any); ok {
					if v, ok := lim["max_body_bytes"].(float64); ok {
						maxBody = int(v)
					}
				}
				for _, l := range b.GetStaticResources().GetListeners() {
					if got := l.GetPerConnectionBufferLimitBytes().GetValue(); int(got) <= maxBody {
						t.Errorf("listener %s: per_connection_buffer_limit_bytes %d must exceed max_body_bytes %d, or Envoy answers 413 before Aegis", l.GetName(), got, maxBody)
					}
				}
			}
		})
	}
}

// The validator must actually look inside typed configs: a broken nested
// config has to fail.
func TestValidateDeepEntersTypedConfigs(t *testing.T) {
	b := loadBootstrap(t, "gateway.yaml")
	good := proto.Clone(b).(*bootstrapv3.Bootstrap)
	if err := envoyconfig.ValidateDeep(good); err != nil {
		t.Fatal(err)
	}
	hcmAny := b.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig()
	var hcm hcmv3.HttpConnectionManager
	if err := hcmAny.UnmarshalTo(&hcm); err != nil {
		t.Fatal(err)
	}
	hcm.StatPrefix = "" // required (min_len 1)
	if err := hcmAny.MarshalFrom(&hcm); err != nil {
		t.Fatal(err)
	}
	if err := envoyconfig.ValidateDeep(b); err == nil || !strings.Contains(err.Error(), "StatPrefix") {
		t.Fatalf("ValidateDeep missed an invalid nested HttpConnectionManager: %v", err)
	}
}

func TestValidateDeepRefusesUnknownTypedConfig(t *testing.T) {
	b := loadBootstrap(t, "sidecar.yaml")
	b.GetStaticResources().GetListeners()[0].GetFilterChains()[0].GetFilters()[0].GetTypedConfig().TypeUrl = "type.googleapis.com/example.NotAConfig"
	if err := envoyconfig.ValidateDeep(b); err == nil || !strings.Contains(err.Error(), "example.NotAConfig") {
		t.Fatalf("unknown typed config accepted: %v", err)
	}
}
