//go:build bench

package bench

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/parleyhq/parley/internal/llm/llmtest"
)

// analysisPath is the hand-written explanation of the misses, kept beside
// the harness and copied into the report when it is written. Update it when
// the figures change.
const analysisPath = "analysis.md"

// Where the report goes, from this package's directory.
const (
	reportPath = "../../BENCHMARKS.md"
	plotPath   = "../../bench/ttft.svg"
	plotLink   = "bench/ttft.svg"
)

// verdict is how a figure compares with its target.
type verdict int

const (
	verdictMet verdict = iota
	verdictMissed
	verdictPending
	verdictFailed
	// verdictReported is a figure the issue asks for without a target.
	verdictReported
)

func verdictOf(ok bool) verdict {
	if ok {
		return verdictMet
	}
	return verdictMissed
}

func (v verdict) String() string {
	switch v {
	case verdictMet:
		return "met"
	case verdictMissed:
		return "**missed**"
	case verdictPending:
		return "pending"
	case verdictReported:
		return "reported"
	}
	return "**not measured**"
}

// summaryRow is one line of the summary table.
type summaryRow struct {
	num                                int // the row of the table
	figure, baseline, target, measured string
	verdict                            verdict
}

// report is everything BENCHMARKS.md says.
type report struct {
	begin    time.Time
	took     time.Duration
	rows     []summaryRow
	sections []section
	svg      string
	loadAt   [2]string
	versions string
	rig      *rig
}

type section struct{ title, body string }

// procs remembers every process the run started, for the log summary.
var (
	procsMu sync.Mutex
	procs   []*proc
)

// TestReport measures everything and writes BENCHMARKS.md and the plot.
func TestReport(t *testing.T) {
	rep := &report{begin: time.Now()}
	rep.loadAt[0] = loadAverage()
	r := newRig(t)
	rep.rig = r
	rep.versions = versions(t, r)
	mock := llmtest.NewServer(t, llmtest.Paced())

	// phase runs one measurement; if it fails before it reports, its rows
	// say so and the rest of the run goes on.
	phase := func(name string, nums []int, figures []string, fn func(t *testing.T) ([]summaryRow, string)) {
		var rows []summaryRow
		var body string
		t.Run(name, func(t *testing.T) {
			begin := time.Now()
			rows, body = fn(t)
			t.Logf("%s took %v", name, time.Since(begin).Round(time.Millisecond))
		})
		if rows == nil {
			for i, f := range figures {
				rows = append(rows, summaryRow{num: nums[i], figure: f, measured: "the measurement failed; see the test log", verdict: verdictFailed})
			}
		}
		for i := range rows {
			if rows[i].num == 0 && len(nums) > 0 {
				rows[i].num = nums[min(i, len(nums)-1)]
			}
		}
		rep.rows = append(rep.rows, rows...)
		if body != "" {
			rep.sections = append(rep.sections, section{title: name, body: body})
		}
	}

	phase("7. Cold start", []int{7}, []string{"Cold start"}, func(t *testing.T) ([]summaryRow, string) {
		return coldStartSection(measureColdStart(t, r, mock.URL))
	})
	phase("8. Image and binary", []int{8}, []string{"Image and binary"}, func(t *testing.T) ([]summaryRow, string) {
		return sizeSection(r)
	})

	main := r.startParley(t, "parley", r.parleyEnv(r.dbURL, mock.URL))
	cs := newCallers(t, r)
	phase("5. Unary requests per second", []int{5, 5, 5}, []string{"Unary GetConversation", "Unary ListConversations", "Unary: Parley's own CPU per GetConversation"}, func(t *testing.T) ([]summaryRow, string) {
		return unarySection(measureUnary(t, r, cs, main), r.pool.Config().MaxConns)
	})
	phase("6. Rate limiter on versus off", []int{6}, []string{"Rate limiter on versus off"}, func(t *testing.T) ([]summaryRow, string) {
		return limiterSection(measureLimiter(t, r, cs, main, mock.URL))
	})
	phase(cachingPhaseTitle, []int{12, 13}, []string{"Conditional GET that hits (304) against a full read", "Time to first token on a response-cache hit"}, func(t *testing.T) ([]summaryRow, string) {
		return cachingSection(measureConditionalGET(t, cs, main), measureCacheTTFT(t, r))
	})
	phase("4. Database writes per answer", []int{4}, []string{"Database writes per answer"}, func(t *testing.T) ([]summaryRow, string) {
		return writesSection(measureWrites(t, r))
	})
	phase("1–2. Time to first token and gaps between deltas", []int{1, 1, 2}, []string{"Added time to first token, 1 stream", "Added time to first token, 256 streams", "Added gap between deltas"},
		func(t *testing.T) ([]summaryRow, string) {
			levels := measureStreaming(t, r, mock, main)
			var points []plotPoint
			for _, lr := range levels {
				points = append(points, plotPoint{conc: lr.load.conc, p50: lr.added(ttftOf, 50), p99: lr.added(ttftOf, 99)})
			}
			rep.svg = ttftSVG(points, streamRounds, fmt.Sprintf("Parley's percentile minus openai-go's straight from the fake model, per round; %s", time.Now().UTC().Format("2006-01-02")))
			rows, body := streamingSection(levels)
			steps, base := measureBreakdown(t, 100)
			return rows, body + "\n![Added time to first token against concurrent streams](" + plotLink + ")\n\n" + breakdownSection(steps, base)
		})
	main.stop()
	phase("3. Concurrent streams held", []int{3, 3}, []string{"Concurrent streams held", "Parley CPU per relayed delta"}, func(t *testing.T) ([]summaryRow, string) {
		return heldSection(measureHeld(t, r))
	})
	phase("9. Deleting a conversation", []int{9}, []string{"Delete a 2,000-message conversation among 200,000 messages of other users"}, func(t *testing.T) ([]summaryRow, string) {
		return deleteSection(measureDelete(t))
	})
	phase(searchPhaseTitle, []int{10}, []string{"Search p50/p99"}, func(t *testing.T) ([]summaryRow, string) {
		return searchSection(measureSearch(t))
	})
	phase(agentPhaseTitle, []int{11, 11, 11, 11}, []string{
		"Agent step handoff on River, one run at a time", "Agent step handoff on River, 10 runs at once",
		"Offline agent run's overhead beyond its model time, one run at a time", "Offline agent run's overhead beyond its model time, 10 runs at once",
	}, func(t *testing.T) ([]summaryRow, string) {
		return agentSection(measureAgents(t))
	})
	var hotPaths string
	t.Run("Hot paths", func(t *testing.T) {
		lines, cmdline, took := runHotPaths(t, r.root)
		hotPaths = hotPathSection(lines, cmdline, took)
	})

	rep.loadAt[1] = loadAverage()
	rep.took = time.Since(rep.begin)
	if err := os.MkdirAll(filepath.Dir(plotPath), 0o755); err != nil {
		t.Fatal(err)
	}
	if rep.svg != "" {
		if err := os.WriteFile(plotPath, []byte(rep.svg), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(reportPath, []byte(rep.markdown(hotPaths)), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s and %s in %v", reportPath, plotPath, rep.took.Round(time.Second))
}

// versions names the database and Redis the run used.
func versions(t *testing.T, r *rig) string {
	var pg string
	if err := r.pool.QueryRow(t.Context(), "SHOW server_version").Scan(&pg); err != nil {
		pg = "unknown"
	}
	redisVersion := "unknown"
	if info, err := redisClient(t, r.redisURL).Info(t.Context(), "server").Result(); err == nil {
		for _, line := range strings.Split(info, "\n") {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), "redis_version:"); ok {
				redisVersion = v
			}
		}
	}
	where := "throwaway servers started by pgtest and redistest"
	if os.Getenv("DATABASE_URL") != "" || os.Getenv("REDIS_URL") != "" {
		where = "DATABASE_URL / REDIS_URL of the environment where set, throwaway servers otherwise"
	}
	return fmt.Sprintf("PostgreSQL %s and Redis %s (%s; pgtest's own server runs with fsync, synchronous_commit and full_page_writes off)", pg, redisVersion, where)
}

// commit is the checked-out commit and whether the tree has changes.
func commit(root string) string {
	out, err := exec.Command("git", "-C", root, "rev-parse", "--short=12", "HEAD").Output()
	if err != nil {
		return "unknown"
	}
	c := "`" + strings.TrimSpace(string(out)) + "`"
	// The report's own files, rewritten by the phases as they finish, are
	// not changes to the code measured.
	if status, err := exec.Command("git", "-C", root, "status", "--porcelain", "--untracked-files=no", "--", ".", ":!BENCHMARKS.md", ":!bench/ttft.svg").Output(); err == nil && len(status) > 0 {
		c += " with uncommitted changes"
	}
	return c
}

func (rep *report) markdown(hotPaths string) string {
	var b strings.Builder
	b.WriteString("# Benchmarks\n\n")
	b.WriteString("<!-- Written by `make bench` (internal/bench); edit internal/bench, not this file. -->\n\n")
	fmt.Fprintf(&b, "Measured %s at commit %s, in %v. ", rep.begin.UTC().Format("2006-01-02 15:04 UTC"), commit(rep.rig.root), rep.took.Round(time.Second))
	b.WriteString("Every figure is a difference or a ratio against a baseline measured in the same run on the same machine, interleaved with it, ")
	b.WriteString("because the machines this runs on are shared and noisy: the median of several rounds, with the lowest and highest round in brackets. ")
	b.WriteString("Everything runs on loopback.\n\n")

	b.WriteString("## Summary\n\n")
	b.WriteString("| # | figure | baseline, same run | target | measured | |\n|---|---|---|---|---|---|\n")
	rows := slices.Clone(rep.rows)
	slices.SortStableFunc(rows, func(a, b summaryRow) int { return a.num - b.num })
	for _, row := range rows {
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %s | %s |\n", row.num, row.figure, row.baseline, row.target, row.measured, row.verdict)
	}
	if rep.svg != "" {
		fmt.Fprintf(&b, "\n![Added time to first token against concurrent streams](%s)\n", plotLink)
	}

	b.WriteString("\n## Machine\n\n")
	cpu, mem, kernel := machineFacts()
	fmt.Fprintf(&b, "- CPU: %s, %d cores (GOMAXPROCS %d), %s of memory\n", cpu, runtime.NumCPU(), runtime.GOMAXPROCS(0), mem)
	fmt.Fprintf(&b, "- %s, %s, %s/%s\n", kernel, runtime.Version(), runtime.GOOS, runtime.GOARCH)
	fmt.Fprintf(&b, "- %s\n", rep.versions)
	fmt.Fprintf(&b, "- One-minute load average %s at the start, %s at the end\n", rep.loadAt[0], rep.loadAt[1])
	b.WriteString("- On the same cores: `parley serve` (a real process, the binary the Dockerfile builds), PostgreSQL, Redis, and the benchmark process, which serves the fake Supabase JWKS and the fake model and runs every client\n")

	b.WriteString("\n## How to reproduce\n\n")
	b.WriteString("```\nmake bench\n```\n\nwhich runs\n\n```\ngo test -tags bench -run TestReport -count=1 -timeout 15m -v ./internal/bench/\n```\n\n")
	b.WriteString("It needs what `make test` needs: PostgreSQL's server binaries and `redis-server` on the machine, or `DATABASE_URL` and `REDIS_URL` pointing at running servers. ")
	b.WriteString("It builds `parley` as the Dockerfile does (`CGO_ENABLED=0 go build -trimpath -ldflags='-s -w'`) and a minimal net/http server into a temporary directory, ")
	b.WriteString("starts its own PostgreSQL and Redis through `pgtest` and `redistest`, serves a JWKS from a dev key (`auth.LoadOrCreateDevKey`) as Supabase would, ")
	b.WriteString("and a fake OpenAI-compatible model (`llmtest`) that streams fixed 16-byte deltas 20 ms apart (`llmtest.Paced`: 64 of them, about 1.3 s). ")
	b.WriteString("Each `parley serve` gets only its configuration in the environment: `HOST=127.0.0.1`, a free `PORT`, `DATABASE_URL`, `REDIS_URL`, `SUPABASE_URL`, `OPENAI_BASE_URL`, `PARLEY_MODELS`, `LOG_LEVEL=warn`, ")
	b.WriteString("and rate limits of a million calls a minute so that every call is checked but none is refused. Clients speak Connect (binary protobuf) over h2c, as Cloud Run's front end does with `--use-http2`. ")
	b.WriteString("Then it writes this file and the plot from scratch.\n")

	for _, s := range rep.sections {
		fmt.Fprintf(&b, "\n## %s\n\n%s", s.title, s.body)
	}
	if hotPaths != "" {
		fmt.Fprintf(&b, "\n## Hot paths (`go test -bench`)\n\n%s", hotPaths)
	}

	b.WriteString("\n## What the parley processes logged\n\n")
	b.WriteString(logSummary())

	b.WriteString("\n## Analysis of the misses\n\n")
	analysis, err := os.ReadFile(analysisPath)
	if err != nil {
		analysis = []byte("(internal/bench/analysis.md is missing: " + err.Error() + ")")
	}
	b.WriteString(strings.TrimSpace(string(analysis)) + "\n")
	return b.String()
}

// logStamp matches the dates and times in log lines that are not JSON
// (go-redis logs through the standard logger), so that they group.
var logStamp = regexp.MustCompile(`\d{4}/\d{2}/\d{2} \d{2}:\d{2}:\d{2} `)

// logSummary counts the warnings and errors every parley process logged
// (they run at LOG_LEVEL=warn) and quotes a few.
func logSummary() string {
	procsMu.Lock()
	defer procsMu.Unlock()
	counts := map[string]int{}
	var examples []string
	total := 0
	for _, p := range procs {
		if !strings.HasPrefix(p.name, "parley") {
			continue
		}
		for _, line := range p.log.Lines() {
			total++
			msg := logStamp.ReplaceAllString(line, "")
			if i := strings.Index(line, `"message":"`); i >= 0 {
				msg = line[i+len(`"message":"`):]
				if j := strings.IndexByte(msg, '"'); j >= 0 {
					msg = msg[:j]
				}
			}
			if counts[msg] == 0 && len(examples) < 5 {
				examples = append(examples, "`"+strings.ReplaceAll(line, "`", "'")+"`")
			}
			counts[msg]++
		}
	}
	if total == 0 {
		return "Nothing: no warning and no error.\n"
	}
	var parts []string
	for msg, n := range counts {
		parts = append(parts, fmt.Sprintf("%q × %d", msg, n))
	}
	return fmt.Sprintf("%d lines at warn or above: %s. For example:\n\n- %s\n", total, strings.Join(sortedStrings(parts), ", "), strings.Join(examples, "\n- "))
}

func sortedStrings(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}
