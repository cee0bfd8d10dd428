//go:build bench

package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleyhq/parley/internal/pgtest"
	"github.com/parleyhq/parley/internal/search"
	"github.com/parleyhq/parley/internal/store"
)

// The search benchmark (issue 10): 100,000 messages and 5,000 artifacts
// spread over 200 users, searched by a user with 10,000 messages.
const (
	searchUsers         = 200
	searchUserMessages  = 10_000
	searchMessages      = 100_000
	searchArtifacts     = 5_000
	searchRounds        = 5
	searchRepeats       = 4 // each query, per round
	searchQueriesByBand = 8
	searchTargetP99     = 20 * time.Millisecond
)

// searchUser is the user who searches.
var searchUser = uuid.MustParse("00000000-0000-4000-8000-00000000a11c")

// searchCorpusSQL writes the corpus in one round trip. Words come from a
// vocabulary of 20,000 made-up ones ("kaka", "lofaka"), drawn with a heavy
// head as in real text: word k with probability about k^(-2/3), so the
// commonest is in most messages and the rarest in a handful. Messages have
// 10 to 59 words, artifacts a 2-to-5-word title and 100 to 999 words.
// %[1]s is the searching user, %[2]d the others' messages each.
const searchCorpusSQL = `
CREATE FUNCTION pg_temp.words(n int) RETURNS text LANGUAGE sql VOLATILE AS $$
  SELECT string_agg((array['ka','lo','mi','ne','ru','ta','po','si','de','fa','gu','ho','ji','be','zo','ve','xa','qui','tre','bla'])[1 + k %% 20]
                 || (array['ka','lo','mi','ne','ru','ta','po','si','de','fa'])[1 + (k / 20) %% 10]
                 || (array['','n','r','s','t','l','m','x','d','k'])[1 + (k / 200) %% 10]
                 || (array['','a','o','i','e','u','y','an','on','el'])[1 + (k / 2000) %% 10], ' ')
  FROM (SELECT floor(20000 * random() ^ 3)::int AS k FROM generate_series(1, n)) r
$$;
CREATE TEMP TABLE bench_users AS
  SELECT n, CASE WHEN n = 0 THEN '%[1]s'::uuid ELSE gen_random_uuid() END AS id FROM generate_series(0, %[3]d - 1) n;
INSERT INTO parley.conversations (user_id, title)
  SELECT u.id, 'conversation ' || c FROM bench_users u, generate_series(1, 10) c;
WITH conv AS (SELECT id, user_id, row_number() OVER (PARTITION BY user_id ORDER BY id) - 1 AS k FROM parley.conversations),
plan AS (
  SELECT u.id AS user_id, m FROM bench_users u
  CROSS JOIN LATERAL generate_series(1, CASE WHEN u.n = 0 THEN %[4]d ELSE %[2]d + CASE WHEN u.n <= %[5]d THEN 1 ELSE 0 END END) m
)
INSERT INTO parley.messages (conversation_id, user_id, role, content, create_time, update_time)
  SELECT c.id, p.user_id, CASE WHEN p.m %% 2 = 1 THEN 'user' ELSE 'assistant' END, pg_temp.words(10 + (p.m * 7) %% 50),
         now() - p.m * interval '1 second', now() - p.m * interval '1 second'
  FROM plan p JOIN conv c ON c.user_id = p.user_id AND c.k = p.m %% 10;
INSERT INTO parley.artifacts (user_id, title, kind, content)
  SELECT u.id, pg_temp.words(2 + a %% 4), 'text', pg_temp.words(100 + (a * 37) %% 900)
  FROM bench_users u, generate_series(1, %[6]d) a;`

// searchQuery is one query of the mix, and how many of the user's
// messages contain its words.
type searchQuery struct {
	band, text string
	matches    int
}

// searchResult is what the phase measured.
type searchResult struct {
	mix           []searchQuery
	p50, p99      []float64 // per round, ms, over the typical mix
	perBand       map[string][]time.Duration
	stress        searchQuery
	stressSamples []time.Duration
	corpusTook    time.Duration
	messages      int
	artifacts     int
}

// measureSearch writes the corpus into a database of its own and times
// search.Service.Search (the domain and the store's one statement, as the
// handler calls it) for the searching user, round by round.
func measureSearch(t *testing.T) searchResult {
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Minute)
	defer cancel()
	pool, err := pgxpool.New(ctx, pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	var res searchResult
	begin := time.Now()
	others := searchMessages - searchUserMessages
	perOther, extra := others/(searchUsers-1), others%(searchUsers-1)
	sql := fmt.Sprintf(searchCorpusSQL, searchUser, perOther, searchUsers, searchUserMessages, extra, searchArtifacts/searchUsers)
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// One connection: the word function and the users table are its own.
	if _, err := conn.Exec(ctx, sql); err != nil {
		conn.Release()
		t.Fatalf("write the corpus: %v", err)
	}
	conn.Release()
	// Fresh statistics, as autovacuum keeps them on a live database (and
	// VACUUM cannot run in the corpus's implicit transaction).
	for _, table := range []string{"parley.messages", "parley.message_search", "parley.artifacts"} {
		if _, err := pool.Exec(ctx, "VACUUM ANALYZE "+table); err != nil {
			t.Fatal(err)
		}
	}
	res.corpusTook = time.Since(begin)
	if err := pool.QueryRow(ctx, "SELECT (SELECT count(*) FROM parley.messages), (SELECT count(*) FROM parley.artifacts)").Scan(&res.messages, &res.artifacts); err != nil {
		t.Fatal(err)
	}
	t.Logf("corpus of %d messages and %d artifacts written in %v", res.messages, res.artifacts, res.corpusTook.Round(time.Millisecond))

	res.mix, res.stress = searchMix(t, ctx, pool)
	svc, err := search.NewService(store.New(pool), "simple")
	if err != nil {
		t.Fatal(err)
	}
	run := func(q string) time.Duration {
		begin := time.Now()
		if _, _, err := svc.Search(ctx, searchUser, search.Request{Query: q}); err != nil {
			t.Fatalf("search %q: %v", q, err)
		}
		return time.Since(begin)
	}
	// Warm the pool's connections and statement cache first.
	for _, q := range res.mix {
		run(q.text)
	}
	res.perBand = map[string][]time.Duration{}
	rng := rand.New(rand.NewPCG(10, 10))
	for round := range searchRounds {
		var order []searchQuery
		for range searchRepeats {
			order = append(order, res.mix...)
		}
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		var samples []time.Duration
		for _, q := range order {
			d := run(q.text)
			samples = append(samples, d)
			res.perBand[q.band] = append(res.perBand[q.band], d)
		}
		res.p50 = append(res.p50, msOf(percentile(samples, 50)))
		res.p99 = append(res.p99, msOf(percentile(samples, 99)))
		res.stressSamples = append(res.stressSamples, run(res.stress.text))
		t.Logf("search round %d: p50 %v, p99 %v over %d searches; the stress query %v", round+1,
			percentile(samples, 50).Round(time.Microsecond), percentile(samples, 99).Round(time.Microsecond), len(samples),
			res.stressSamples[round].Round(time.Microsecond))
	}
	return res
}

// searchMix picks the queries: words of the searching user's messages by
// how many messages hold them (rare, uncommon, common), pairs of common
// words (all must match), and phrases of two words that follow each other;
// and, apart, the stress query: the word in the most messages.
func searchMix(t *testing.T, ctx context.Context, pool *pgxpool.Pool) ([]searchQuery, searchQuery) {
	rows, err := pool.Query(ctx, `
		SELECT word, ndoc FROM ts_stat(format('SELECT to_tsvector(%L::regconfig, content) FROM parley.messages WHERE user_id = %L', 'simple', $1::text))
		ORDER BY ndoc DESC, word`, searchUser.String())
	if err != nil {
		t.Fatal(err)
	}
	type stat struct {
		Word string
		Ndoc int
	}
	stats, err := pgx.CollectRows(rows, pgx.RowToStructByPos[stat])
	if err != nil {
		t.Fatal(err)
	}
	if len(stats) == 0 {
		t.Fatal("the searching user's messages have no words")
	}
	pick := func(band string, lo, hi int) []searchQuery {
		var out []searchQuery
		for _, s := range stats {
			if s.Ndoc > lo && s.Ndoc <= hi && len(out) < searchQueriesByBand {
				out = append(out, searchQuery{band: band, text: s.Word, matches: s.Ndoc})
			}
		}
		if len(out) == 0 {
			t.Fatalf("no word in %d to %d messages", lo+1, hi)
		}
		return out
	}
	rare := pick("one word in at most 10 messages", 0, 10)
	uncommon := pick("one word in 11 to 100 messages", 10, 100)
	common := pick("one word in 101 to 1,000 messages", 100, 1000)
	mix := append(append(append([]searchQuery{}, rare...), uncommon...), common...)
	// Pairs: a common word and an uncommon one, both required.
	for i := range min(len(common), len(uncommon)) {
		mix = append(mix, searchQuery{band: "two words, both required", text: common[i].text + " " + uncommon[i].text})
	}
	// Phrases: two words that follow each other in one of the user's messages.
	rows, err = pool.Query(ctx, `
		SELECT split_part(content, ' ', 2) || ' ' || split_part(content, ' ', 3) FROM parley.messages
		WHERE user_id = $1 ORDER BY create_time DESC LIMIT $2`, searchUser, searchQueriesByBand)
	if err != nil {
		t.Fatal(err)
	}
	phrases, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range phrases {
		mix = append(mix, searchQuery{band: "a quoted phrase of two words", text: `"` + p + `"`})
	}
	// The number of matches of the multi-word queries.
	for i := range mix {
		if mix[i].matches > 0 {
			continue
		}
		if err := pool.QueryRow(ctx, `SELECT count(*) FROM parley.message_search WHERE user_id = $1
			AND search_simple @@ websearch_to_tsquery('simple', $2)`, searchUser, mix[i].text).Scan(&mix[i].matches); err != nil {
			t.Fatal(err)
		}
	}
	return mix, searchQuery{band: "stress", text: stats[0].Word, matches: stats[0].Ndoc}
}

// searchBands lists the bands of the mix in order.
var searchBands = []string{
	"one word in at most 10 messages", "one word in 11 to 100 messages", "one word in 101 to 1,000 messages",
	"two words, both required", "a quoted phrase of two words",
}

func searchSection(res searchResult) (rows []summaryRow, details string) {
	p50, p99 := spreadOf(res.p50), spreadOf(res.p99)
	stress := percentile(res.stressSamples, 50)
	rows = append(rows, summaryRow{
		num:      10,
		figure:   fmt.Sprintf("Search p50/p99 for a user with %s messages, among %s messages and %s artifacts of %d users", thousands(searchUserMessages), thousands(res.messages), thousands(res.artifacts), searchUsers),
		baseline: "—",
		target:   fmt.Sprintf("p99 ≤ %d ms", searchTargetP99.Milliseconds()),
		measured: fmt.Sprintf("p50 %s, p99 %s over a mix of %d queries (rare to common words, pairs, phrases); a word in %d%% of the user's messages: %s (median)",
			p50.format(ms), p99.format(ms), len(res.mix), res.stress.matches*100/searchUserMessages, ms(msOf(stress))),
		verdict: verdictOf(p99.Med <= msOf(searchTargetP99)),
	})
	var b strings.Builder
	fmt.Fprintf(&b, "A database of this phase's own holds %s messages and %s artifacts of %d users, written in one statement (`generate_series`, %.1f s with the indexes): ", thousands(res.messages), thousands(res.artifacts), searchUsers, res.corpusTook.Seconds())
	fmt.Fprintf(&b, "the searching user has %s messages in 10 conversations and %d artifacts, each other user about %d messages and %d artifacts. ", thousands(searchUserMessages), searchArtifacts/searchUsers, (searchMessages-searchUserMessages)/(searchUsers-1), searchArtifacts/searchUsers)
	b.WriteString("Words come from a made-up vocabulary of 20,000 drawn with a heavy head, as in real text: the commonest is in most messages, the rarest in a handful. ")
	fmt.Fprintf(&b, "Each of %d rounds runs every query of the mix %d times in a shuffled order through `search.Service.Search` (the rules and the store's one statement, as the handler calls them, without the HTTP hop that the unary rows measure) with the `simple` configuration, page size 20, and takes the round's p50 and p99. ", searchRounds, searchRepeats)
	b.WriteString("The query ranks every match of the user's from its stored vector (messages' in message_search, artifacts' in their generated columns), so its cost grows with the number of matches, not with other users' rows: the stress query, the commonest word, is timed once per round and kept out of the target's mix, because nobody searches for a word in nearly every message.\n\n")
	b.WriteString("| queries | matching messages | p50 | p99 |\n|---|---|---|---|\n")
	for _, band := range searchBands {
		var lo, hi int
		first := true
		var examples []string
		for _, q := range res.mix {
			if q.band != band {
				continue
			}
			if first || q.matches < lo {
				lo = q.matches
			}
			if first || q.matches > hi {
				hi = q.matches
			}
			first = false
			if len(examples) < 2 {
				examples = append(examples, "`"+q.text+"`")
			}
		}
		samples := res.perBand[band]
		matches := fmt.Sprintf("%d to %d", lo, hi)
		if lo == hi {
			matches = fmt.Sprint(lo)
		}
		fmt.Fprintf(&b, "| %s (%s) | %s | %s | %s |\n", band, strings.Join(examples, ", "), matches, ms(msOf(percentile(samples, 50))), ms(msOf(percentile(samples, 99))))
	}
	fmt.Fprintf(&b, "| stress: `%s`, the commonest word | %d | %s | %s |\n", res.stress.text, res.stress.matches, ms(msOf(percentile(res.stressSamples, 50))), ms(msOf(percentile(res.stressSamples, 99))))
	fmt.Fprintf(&b, "\nOver the mix, per round: p50 %s, p99 %s. `TestSearchPlan` (internal/store) checks that the plan reads both GIN indexes with the user's id in the index condition.\n", p50.format(ms), p99.format(ms))
	return rows, b.String()
}

// thousands writes n with commas: 100,000.
func thousands(n int) string {
	s := fmt.Sprint(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

// TestSearchReport measures the search phase alone and writes it into
// BENCHMARKS.md in place (its summary row and its section), leaving the
// rest of the report as the last `make bench` wrote it:
//
//	go test -tags bench -run TestSearchReport -count=1 -timeout 15m -v ./internal/bench/
func TestSearchReport(t *testing.T) {
	load := loadAverage()
	rows, body := searchSection(measureSearch(t))
	root := "../.."
	note := fmt.Sprintf("(Measured on its own on %s at commit %s by `TestSearchReport`, which runs only this phase (one-minute load average %s); the next `make bench` measures it with the rest.)\n\n",
		time.Now().UTC().Format("2006-01-02 15:04 UTC"), commit(root), load)
	old, err := os.ReadFile(reportPath)
	if err != nil {
		t.Fatal(err)
	}
	out, err := spliceReport(string(old), rows, section{title: searchPhaseTitle, body: note + body})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(reportPath, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote the search phase into %s", reportPath)
}

// searchPhaseTitle is the phase's name in TestReport and its section's.
const searchPhaseTitle = "10. Search"

// spliceReport replaces (or adds) rows of the summary table with their
// number, and the section of the same title (added before the hot paths).
func spliceReport(md string, rows []summaryRow, sec section) (string, error) {
	lines := strings.Split(md, "\n")
	var out []string
	inTable, placed := false, false
	nums := map[int]bool{}
	for _, r := range rows {
		nums[r.num] = true
	}
	rowLine := func(r summaryRow) string {
		return fmt.Sprintf("| %d | %s | %s | %s | %s | %s |", r.num, r.figure, r.baseline, r.target, r.measured, r.verdict)
	}
	for _, line := range lines {
		if strings.HasPrefix(line, "| # | figure |") {
			inTable = true
		}
		if inTable && strings.HasPrefix(line, "| ") && !strings.HasPrefix(line, "| # ") && !strings.HasPrefix(line, "|---") {
			var num int
			if _, err := fmt.Sscanf(line, "| %d |", &num); err == nil {
				if nums[num] {
					continue // replaced below
				}
				if !placed && num > rows[0].num {
					for _, r := range rows {
						out = append(out, rowLine(r))
					}
					placed = true
				}
			}
		}
		if inTable && line == "" {
			if !placed {
				for _, r := range rows {
					out = append(out, rowLine(r))
				}
				placed = true
			}
			inTable = false
		}
		out = append(out, line)
	}
	if !placed {
		return "", fmt.Errorf("no summary table in the report")
	}
	md = strings.Join(out, "\n")
	heading := "\n## " + sec.title + "\n\n"
	if i := strings.Index(md, heading); i >= 0 {
		end := strings.Index(md[i+len(heading):], "\n## ")
		if end < 0 {
			return "", fmt.Errorf("section %q is the last one", sec.title)
		}
		return md[:i] + heading + sec.body + md[i+len(heading)+end:], nil
	}
	at := strings.Index(md, "\n## Hot paths")
	if at < 0 {
		return "", fmt.Errorf("no hot paths section to put %q before", sec.title)
	}
	return md[:at] + heading + sec.body + md[at:], nil
}
