// Package logging builds Parley's slog loggers: one JSON object per line with
// Cloud Logging's field names in production, colored text (tint) in dev, and
// the request's trace attached to every record logged with its context.
package logging

import (
	"context"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/lmittmann/tint"
	"go.opentelemetry.io/otel/trace"
)

// Options configure New.
type Options struct {
	Format string // "json" or "text"
	Level  slog.Leveler
	// Project is the Google Cloud project id; with it, traces are written in
	// the projects/<id>/traces/<trace> form Cloud Logging links to Cloud Trace.
	Project string
	// NoColor disables colors in text mode (when the output is not a terminal).
	NoColor bool
}

// New returns a logger writing to w.
func New(w io.Writer, opts Options) *slog.Logger {
	var h slog.Handler
	if opts.Format == "text" {
		h = tint.NewTextHandler(w, &tint.Options{Level: opts.Level, TimeFormat: time.TimeOnly, NoColor: opts.NoColor})
	} else {
		h = slog.NewJSONHandler(w, &slog.HandlerOptions{Level: opts.Level, AddSource: false, ReplaceAttr: cloudLoggingAttr})
	}
	return slog.New(&traceHandler{Handler: h, project: opts.Project})
}

// IsTerminal reports whether f looks like an interactive terminal.
func IsTerminal(f *os.File) bool {
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

// cloudLoggingAttr renames slog's built-in keys to the ones Cloud Logging
// reads from structured logs.
func cloudLoggingAttr(groups []string, a slog.Attr) slog.Attr {
	if len(groups) > 0 {
		return a
	}
	switch a.Key {
	case slog.MessageKey:
		a.Key = "message"
	case slog.LevelKey:
		a.Key = "severity"
		level, _ := a.Value.Any().(slog.Level)
		switch {
		case level >= slog.LevelError:
			a.Value = slog.StringValue("ERROR")
		case level >= slog.LevelWarn:
			a.Value = slog.StringValue("WARNING")
		case level >= slog.LevelInfo:
			a.Value = slog.StringValue("INFO")
		default:
			a.Value = slog.StringValue("DEBUG")
		}
	}
	return a
}

type traceKey struct{}

// Trace identifies the distributed trace a request belongs to.
type Trace struct {
	TraceID string
	SpanID  string
	Sampled bool
}

// WithTrace returns a context whose log records carry t.
func WithTrace(ctx context.Context, t Trace) context.Context {
	return context.WithValue(ctx, traceKey{}, t)
}

// TraceFromHeaders reads the W3C traceparent header, or Google's older
// X-Cloud-Trace-Context, as Cloud Run's front end sends them.
func TraceFromHeaders(traceparent, cloudTrace string) (Trace, bool) {
	// traceparent: 00-<32 hex trace>-<16 hex span>-<2 hex flags>
	if parts := strings.Split(traceparent, "-"); len(parts) == 4 && len(parts[1]) == 32 && len(parts[2]) == 16 && isHex(parts[1]) && isHex(parts[2]) {
		return Trace{TraceID: parts[1], SpanID: parts[2], Sampled: strings.HasSuffix(parts[3], "1")}, true
	}
	// X-Cloud-Trace-Context: <32 hex trace>/<decimal span>;o=<0|1>
	if cloudTrace != "" {
		traceID, rest, _ := strings.Cut(cloudTrace, "/")
		if len(traceID) == 32 && isHex(traceID) {
			span, opts, _ := strings.Cut(rest, ";")
			return Trace{TraceID: traceID, SpanID: span, Sampled: opts == "o=1"}, true
		}
	}
	return Trace{}, false
}

func isHex(s string) bool {
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return false
		}
	}
	return true
}

// traceHandler adds the context's trace to each record under Cloud
// Logging's special keys: the active OpenTelemetry span's, when tracing is
// on and one is recording the work being logged (so the line sits under
// that span in Cloud Trace), else the trace the request's headers named
// (WithTrace).
type traceHandler struct {
	slog.Handler
	project string
}

func (h *traceHandler) Handle(ctx context.Context, r slog.Record) error {
	t, ok := ctx.Value(traceKey{}).(Trace)
	if sc := trace.SpanContextFromContext(ctx); sc.IsValid() {
		t, ok = Trace{TraceID: sc.TraceID().String(), SpanID: sc.SpanID().String(), Sampled: sc.IsSampled()}, true
	}
	if ok {
		trace := t.TraceID
		if h.project != "" {
			trace = "projects/" + h.project + "/traces/" + t.TraceID
		}
		r.AddAttrs(
			slog.String("logging.googleapis.com/trace", trace),
			slog.String("logging.googleapis.com/spanId", t.SpanID),
			slog.Bool("logging.googleapis.com/trace_sampled", t.Sampled),
		)
	}
	return h.Handler.Handle(ctx, r)
}

func (h *traceHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	return &traceHandler{Handler: h.Handler.WithAttrs(attrs), project: h.project}
}

func (h *traceHandler) WithGroup(name string) slog.Handler {
	return &traceHandler{Handler: h.Handler.WithGroup(name), project: h.project}
}
