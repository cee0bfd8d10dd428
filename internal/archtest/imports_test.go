package archtest

import (
	"bytes"
	"os/exec"
	"strings"
	"testing"
)

// domainPackages are the packages that hold Parley's rules. They declare
// the interfaces they need; adapters (store, llm, broker, ratelimit,
// queue) implement them. A new domain package is added here.
var domainPackages = []string{
	"github.com/parleyhq/parley/internal/chat",
	"github.com/parleyhq/parley/internal/agent",
	"github.com/parleyhq/parley/internal/artifact",
	"github.com/parleyhq/parley/internal/attachment",
	"github.com/parleyhq/parley/internal/search",
	"github.com/parleyhq/parley/internal/share",
	"github.com/parleyhq/parley/internal/billing",
	"github.com/parleyhq/parley/internal/pagetoken",
	"github.com/parleyhq/parley/internal/plan",
	"github.com/parleyhq/parley/internal/user",
	"github.com/parleyhq/parley/internal/apperr",
	"github.com/parleyhq/parley/internal/clock",
}

// forbidden are the packages (and their subpackages) no domain package may depend on,
// directly or through another package: databases, Redis, model SDKs, the
// RPC framework and generated protobuf code, and our own adapters.
var forbidden = []string{
	"github.com/jackc/pgx",
	"github.com/redis/go-redis",
	"github.com/openai/openai-go",
	"connectrpc.com",
	"google.golang.org/protobuf",
	"google.golang.org/grpc",
	"github.com/parleyhq/parley/internal/gen",
	"github.com/parleyhq/parley/internal/store",
	"github.com/parleyhq/parley/internal/broker",
	"github.com/parleyhq/parley/internal/llm",
	"github.com/parleyhq/parley/internal/qstash",
	"github.com/parleyhq/parley/internal/stripeapi",
	"github.com/stripe/stripe-go",
	"github.com/parleyhq/parley/internal/riverq",
	"github.com/riverqueue",
	"github.com/parleyhq/parley/internal/redisconn",
	"github.com/parleyhq/parley/internal/ratelimit",
	"github.com/parleyhq/parley/internal/respcache",
	"github.com/parleyhq/parley/internal/objstore",
	"github.com/aws/aws-sdk-go-v2",
	"github.com/parleyhq/parley/internal/rpc",
	"github.com/parleyhq/parley/internal/server",
	"github.com/parleyhq/parley/internal/app",
}

// TestDomainImports fails when a domain package's dependencies (as `go
// list -deps` reports them, test files excluded) include an adapter.
func TestDomainImports(t *testing.T) {
	t.Parallel()
	for _, pkg := range domainPackages {
		t.Run(pkg[strings.LastIndex(pkg, "/")+1:], func(t *testing.T) {
			t.Parallel()
			deps := goListDeps(t, pkg)
			if len(deps) == 0 {
				t.Fatalf("go list -deps %s listed nothing", pkg)
			}
			for _, dep := range deps {
				for _, f := range forbidden {
					if dep == f || strings.HasPrefix(dep, f+"/") {
						t.Errorf("%s depends on %s: a domain package declares interfaces and imports no adapter", pkg, dep)
					}
				}
			}
		})
	}
}

// TestForbiddenListIsLive guards the test above against passing vacuously:
// the adapters it names do show up in the dependencies of the package
// that wires them.
func TestForbiddenListIsLive(t *testing.T) {
	t.Parallel()
	deps := strings.Join(goListDeps(t, "github.com/parleyhq/parley/internal/app"), "\n")
	for _, want := range []string{"github.com/jackc/pgx/v5", "github.com/redis/go-redis/v9", "github.com/openai/openai-go/v3", "connectrpc.com/connect"} {
		if !strings.Contains(deps, want+"\n") {
			t.Errorf("internal/app does not depend on %s: is the forbidden list stale?", want)
		}
	}
}

func goListDeps(t *testing.T, pkg string) []string {
	t.Helper()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(t.Context(), "go", "list", "-deps", pkg)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("go list -deps %s: %v\n%s", pkg, err, stderr.String())
	}
	return strings.Fields(stdout.String())
}
