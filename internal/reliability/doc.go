// Package reliability holds Parley's reliability suite, which is tests
// only. They run parley serve as real processes (built with the race
// detector) against a PostgreSQL and a Redis of their own, which they stop
// and start again, behind a fake Supabase JWKS and a fake OpenAI-compatible
// upstream that fail on request. Then they check that no message was lost
// or duplicated, that no agent run was stranded, and that every client was
// told the truth with the right code. RELIABILITY.md at the repository's
// root lists each scenario and what it proves.
//
// `make test` runs the short versions. `make soak` runs them with
// PARLEY_SOAK set, longer and under more load, and rewrites RELIABILITY.md
// with the figures of that run.
package reliability
