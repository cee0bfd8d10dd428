package telemetry

import (
	"context"
	"strings"

	"github.com/exaring/otelpgx"
	"github.com/jackc/pgx/v5"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
)

// QueryTracer is the database pool's tracer on tp: otelpgx, a span per
// query, batch, prepare and connect beneath the span of the work that
// made it (never a trace of its own: see ChildrenOnly), named by the
// sqlc query (QueryName) and carrying the statement but not its
// arguments, which hold what users wrote. Pool acquisitions get no span:
// they would double every query's.
func QueryTracer(tp trace.TracerProvider) pgx.QueryTracer {
	return otelpgx.NewTracer(
		otelpgx.WithTracerProvider(ChildrenOnly(tp)),
		otelpgx.WithMeterProvider(noop.NewMeterProvider()),
		otelpgx.WithDisableAcquireTracer(),
		otelpgx.WithSpanNameCtxFunc(QueryName),
	)
}

// QueryName names a query's span: the name sqlc gives the query in the
// comment it starts with ("-- name: LoadContext :many" is
// "LoadContext"), else the statement's first word ("SELECT"), as otelpgx
// would. Both are few, so spans group well.
func QueryName(ctx context.Context, stmt string) string {
	if rest, ok := strings.CutPrefix(strings.TrimSpace(stmt), "-- name: "); ok {
		if name, _, _ := strings.Cut(rest, " "); name != "" && !strings.ContainsAny(name, "\n\r\t") {
			return name
		}
	}
	return otelpgx.SQLOperationName(ctx, stmt)
}
