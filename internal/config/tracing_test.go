package config

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestTracing(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name string
		env  map[string]string
		want TracingConfig
	}{
		{"OffByDefault", nil, TracingConfig{ServiceName: "parley", SampleRatio: 1}},
		{"BaseEndpoint", map[string]string{"OTEL_EXPORTER_OTLP_ENDPOINT": "http://localhost:4318/"},
			TracingConfig{Endpoint: "http://localhost:4318/v1/traces", ServiceName: "parley", SampleRatio: 1}},
		{"TracesEndpointWins", map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT":        "http://localhost:4318",
			"OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": "https://collector.example.com/custom",
			"OTEL_SERVICE_NAME":                  "parley-eu",
			"OTEL_TRACES_SAMPLER_ARG":            "0.25",
			"OTEL_EXPORTER_OTLP_HEADERS":         "x-api-key=a%20b, x-team = core",
		}, TracingConfig{
			Endpoint: "https://collector.example.com/custom", ServiceName: "parley-eu", SampleRatio: 0.25,
			Headers: map[string]string{"x-api-key": "a b", "x-team": "core"},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, err := Load(env(tt.env), ModeDev)
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, cfg.Tracing); diff != "" {
				t.Errorf("Tracing (-want +got):\n%s", diff)
			}
			if cfg.Tracing.Enabled() != (tt.want.Endpoint != "") {
				t.Errorf("Enabled() = %v with endpoint %q", cfg.Tracing.Enabled(), cfg.Tracing.Endpoint)
			}
		})
	}
	t.Run("ErrInvalid", func(t *testing.T) {
		t.Parallel()
		_, err := Load(env(map[string]string{
			"OTEL_EXPORTER_OTLP_ENDPOINT": "localhost:4318",
			"OTEL_TRACES_SAMPLER_ARG":     "2",
			"OTEL_EXPORTER_OTLP_HEADERS":  "authorization",
		}), ModeDev)
		if err == nil {
			t.Fatal("Load succeeded")
		}
		for _, name := range []string{"OTEL_EXPORTER_OTLP_ENDPOINT", "OTEL_TRACES_SAMPLER_ARG", "OTEL_EXPORTER_OTLP_HEADERS"} {
			if !strings.Contains(err.Error(), name) {
				t.Errorf("error does not name %s: %v", name, err)
			}
		}
	})
}
