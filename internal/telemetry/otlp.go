package telemetry

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"time"

	tracepb "go.opentelemetry.io/proto/otlp/trace/v1"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
)

// otlpTimeout bounds one export, as OTEL_EXPORTER_OTLP_TIMEOUT's default.
const otlpTimeout = 10 * time.Second

// otlpHTTP is an otlptrace.Client speaking OTLP/HTTP with protobuf
// bodies (https://opentelemetry.io/docs/specs/otlp/#otlphttp): one POST
// of an ExportTraceServiceRequest per batch. It is what otlptracehttp
// does, less its retries (a batch a collector refuses is dropped, and the
// SDK logs it) and without the collector's generated gRPC service, which
// otlptracehttp links into the binary (about 6 MiB).
type otlpHTTP struct {
	url     string
	headers map[string]string
	client  *http.Client
}

func newOTLPHTTP(url string, headers map[string]string) *otlpHTTP {
	return &otlpHTTP{url: url, headers: headers, client: &http.Client{Timeout: otlpTimeout}}
}

// Start implements otlptrace.Client.
func (c *otlpHTTP) Start(context.Context) error { return nil }

// Stop implements otlptrace.Client.
func (c *otlpHTTP) Stop(context.Context) error {
	c.client.CloseIdleConnections()
	return nil
}

// UploadTraces implements otlptrace.Client.
func (c *otlpHTTP) UploadTraces(ctx context.Context, spans []*tracepb.ResourceSpans) error {
	body, err := exportRequest(spans)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("telemetry: OTLP request: %w", err)
	}
	req.Header.Set("Content-Type", "application/x-protobuf")
	for k, v := range c.headers {
		req.Header.Set(k, v)
	}
	res, err := c.client.Do(req)
	if err != nil {
		return fmt.Errorf("telemetry: OTLP export: %w", err)
	}
	defer res.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10))
	if res.StatusCode < 200 || res.StatusCode > 299 {
		return fmt.Errorf("telemetry: OTLP collector answered %s", res.Status)
	}
	return nil
}

// exportRequest encodes an ExportTraceServiceRequest, whose only field is
// `repeated ResourceSpans resource_spans = 1`, without its generated type.
func exportRequest(spans []*tracepb.ResourceSpans) ([]byte, error) {
	var out []byte
	for _, rs := range spans {
		b, err := proto.Marshal(rs)
		if err != nil {
			return nil, fmt.Errorf("telemetry: encode spans: %w", err)
		}
		out = protowire.AppendTag(out, 1, protowire.BytesType)
		out = protowire.AppendBytes(out, b)
	}
	return out, nil
}
