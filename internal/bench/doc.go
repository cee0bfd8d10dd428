// Package bench measures Parley against baselines taken in the same run and
// writes BENCHMARKS.md and bench/ttft.svg at the repository root.
//
// Everything here is a test behind the "bench" build tag, so `go test ./...`
// neither builds nor runs it. `make bench` runs it:
//
//	go test -tags bench -run TestReport -count=1 -timeout 15m -v ./internal/bench/
//
// It builds `parley` as the Dockerfile does and runs it as a real process
// against a throwaway PostgreSQL and Redis (pgtest, redistest), a fake
// Supabase JWKS and a paced fake model (llmtest), all on loopback. Every
// figure is a difference or a ratio against a baseline measured in the same
// run, and the median of several rounds, because the machines it runs on are
// shared and noisy.
package bench
