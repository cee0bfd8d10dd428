package reliability

import (
	"fmt"
	"math/rand/v2"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/chat"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/llm/llmtest"
)

// loadFigures are what TestLoadNothingLost did, for RELIABILITY.md.
type loadFigures struct {
	users, rounds                          int
	answers, stops, resumes, edits, regens atomic.Int64
	runs                                   atomic.Int64
	requests                               int
	rssBefore, rssMid, rssAfter            [3]int64
	took                                   time.Duration
}

// TestLoadNothingLost: users send, stop, resume, edit and regenerate
// answers and run agents at once, spread over three instances, while the
// model streams at a model's pace. Afterwards every answer is saved once,
// with exactly the text its client received; every run ended; no instance
// reported a data race; and each instance's memory is back near where it
// was after a warm-up.
func TestLoadNothingLost(t *testing.T) {
	chunks := llmtest.FixedChunks(24, 8)
	whole := strings.Join(chunks, "")
	script := func(r llmtest.RecordedRequest) llmtest.Turn {
		if stepOf(r) != "" {
			return stepScript(r)
		}
		return llmtest.Turn{Chunks: chunks}
	}
	c := newCluster(t, options{Instances: 3, Model: []llmtest.Option{llmtest.Respond(script), llmtest.Interval(2 * time.Millisecond)}})
	ctx := testContext(t, 10*time.Minute)
	f := &loadFigures{users: scale(6, 40), rounds: scale(5, 30)}

	// A warm-up round, so the baseline holds the pools and caches.
	warm := c.Supabase.Token(t, newUser())
	for i := range c.Inst {
		a := send(t, ctx, c.Chat(i, warm), conversation(t, ctx, c.Chat(i, warm)), "warm up")
		a.drain(t)
	}
	time.Sleep(time.Second)
	for i, p := range c.Inst {
		f.rssBefore[i] = rss(t, p)
	}

	type saved struct {
		user    uuid.UUID
		id      string
		text    string
		status  chat.Status
		convID  string
		replace bool // an edit or regeneration: a sibling, not a new exchange
	}
	var (
		mu      sync.Mutex
		answers []saved
		runIDs  = map[string]uuid.UUID{}
	)
	record := func(s saved) {
		mu.Lock()
		answers = append(answers, s)
		mu.Unlock()
	}
	// The load runs twice: a leak grows with every answer, while a heap
	// that reached its working size in the first phase stays there.
	begin := time.Now()
	for phase := range 2 {
		var wg sync.WaitGroup
		for u := range f.users {
			u := u + phase*f.users
			wg.Go(func() {
				rng := rand.New(rand.NewPCG(uint64(u), 7))
				user := newUser()
				token := c.Supabase.Token(t, user)
				at := func() int { return rng.IntN(len(c.Inst)) }
				conv := conversation(t, ctx, c.Chat(at(), token))
				var last *answer
				for r := range f.rounds {
					i := at()
					other := (i + 1 + rng.IntN(len(c.Inst)-1)) % len(c.Inst)
					switch op := r % 5; {
					case op == 1 && last != nil: // stop it from another instance midway
						a := send(t, ctx, c.Chat(i, token), conv, fmt.Sprintf("round %d", r))
						a.until(t, 1)
						if _, err := c.Chat(other, token).StopGeneration(ctx, connect.NewRequest(&parleyv1.StopGenerationRequest{GenerationId: a.GenerationID})); err != nil {
							t.Errorf("StopGeneration: %v", err)
						}
						a.drain(t)
						f.stops.Add(1)
						if a.Completed == nil {
							t.Errorf("a stopped answer ended with %v", a.Err)
							continue
						}
						record(saved{user, a.AnswerID, a.Text(), chat.Status(statusName(a.Completed.Status)), conv, false})
						last = a
					case op == 2: // followed live on another instance
						a := send(t, ctx, c.Chat(i, token), conv, fmt.Sprintf("round %d", r))
						follower := resume(t, ctx, c.Chat(other, token), a.GenerationID, 0)
						a.drain(t)
						follower.drain(t)
						f.resumes.Add(1)
						if follower.Text() != a.Text() || follower.Completed == nil {
							t.Errorf("the follower on %s got %q (%v), the sender %q", c.Inst[other].name, follower.Text(), follower.Err, a.Text())
						}
						record(saved{user, a.AnswerID, a.Text(), chat.StatusCompleted, conv, false})
						last = a
					case op == 3 && last != nil: // edit the last question
						s, err := c.Chat(i, token).EditMessage(ctx, connect.NewRequest(&parleyv1.EditMessageRequest{MessageId: last.UserMsgID, Content: fmt.Sprintf("round %d, edited", r)}))
						a := opened(t, s, err)
						a.drain(t)
						f.edits.Add(1)
						record(saved{user, a.AnswerID, a.Text(), chat.StatusCompleted, conv, true})
						last = a
					case op == 4 && last != nil: // write the last answer again
						s, err := c.Chat(i, token).RegenerateMessage(ctx, connect.NewRequest(&parleyv1.RegenerateMessageRequest{MessageId: last.AnswerID}))
						a := opened(t, s, err)
						a.drain(t)
						f.regens.Add(1)
						record(saved{user, a.AnswerID, a.Text(), chat.StatusCompleted, conv, true})
						last = a
					default:
						a := send(t, ctx, c.Chat(i, token), conv, fmt.Sprintf("round %d", r))
						a.drain(t)
						record(saved{user, a.AnswerID, a.Text(), chat.StatusCompleted, conv, false})
						last = a
					}
					f.answers.Add(1)
					if r == f.rounds/2 {
						id := startRun(t, ctx, c.Agent(i, token), "load run "+strconv.Itoa(u)+";")
						mu.Lock()
						runIDs[id] = user
						mu.Unlock()
						f.runs.Add(1)
					}
				}
			})
		}
		wg.Wait()
		if phase == 0 {
			time.Sleep(time.Second)
			for i, p := range c.Inst {
				f.rssMid[i] = rss(t, p)
			}
		}
	}
	f.took = time.Since(begin)
	f.requests = len(c.Model.Requests())

	// Every answer is saved once, as its client received it.
	for _, a := range answers {
		m := c.saved(t, a.user, a.id)
		if m.Content != a.text || m.Status != a.status {
			t.Errorf("answer %s: saved %q (%s), the client received %q (%s)", a.id, m.Content, m.Status, a.text, a.status)
		}
		if a.status == chat.StatusCompleted && a.text != whole {
			t.Errorf("answer %s: received %q, want the whole answer", a.id, a.text)
		}
	}
	// No exchange is saved twice: the database holds as many assistant
	// messages per conversation as answers were started in it.
	perConv := map[string]int{}
	for _, a := range answers {
		perConv[a.convID]++
	}
	for conv, want := range perConv {
		var n int
		if err := c.Pool.QueryRow(ctx, "SELECT count(*) FROM parley.messages WHERE conversation_id = $1 AND role = 'assistant'", conv).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Errorf("conversation %s holds %d answers, %d were started", conv, n, want)
		}
	}
	// Every run ended, each step once.
	for id, user := range runIDs {
		token := c.Supabase.Token(t, user)
		run := watchRun(t, ctx, c.Agent(c.Any(), token), id)
		wantRanOnce(t, run, stepRequests(c.Model, run.Goal), nil)
	}

	time.Sleep(2 * time.Second)
	for i, p := range c.Inst {
		f.rssAfter[i] = rss(t, p)
		// The second phase ran as many answers as the first: memory that
		// keeps growing with it is a leak.
		if grew := f.rssAfter[i] - f.rssMid[i]; grew > 24<<20 {
			t.Errorf("%s: resident memory grew %d MiB in the second phase (%d → %d → %d MiB)", p.name, grew>>20, f.rssBefore[i]>>20, f.rssMid[i]>>20, f.rssAfter[i]>>20)
		}
	}
	t.Logf("%d users × %d rounds over %v: %d answers (%d stopped, %d followed, %d edits, %d regenerations), %d agent runs, %d model requests",
		2*f.users, f.rounds, f.took.Round(time.Millisecond), f.answers.Load(), f.stops.Load(), f.resumes.Load(), f.edits.Load(), f.regens.Load(), f.runs.Load(), f.requests)
	for i, p := range c.Inst {
		t.Logf("%s resident memory: %d MiB after warm-up, %d after the first phase, %d after the second", p.name, f.rssBefore[i]>>20, f.rssMid[i]>>20, f.rssAfter[i]>>20)
	}
	recordLoad(t, fmt.Sprintf("%d users × %d rounds in %s: %d answers (%d stopped from another instance, %d followed on another, %d edits, %d regenerations), %d agent runs, %d model requests; resident MiB per instance after warm-up %v, after phase 1 %v, after phase 2 %v",
		2*f.users, f.rounds, f.took.Round(time.Millisecond), f.answers.Load(), f.stops.Load(), f.resumes.Load(), f.edits.Load(), f.regens.Load(), f.runs.Load(), f.requests,
		mib(f.rssBefore[:]), mib(f.rssMid[:]), mib(f.rssAfter[:])))
}

// statusName maps a protobuf status to the domain's.
func statusName(s parleyv1.MessageStatus) string {
	return strings.ToLower(strings.TrimPrefix(s.String(), "MESSAGE_STATUS_"))
}

func mib(v []int64) []int64 {
	out := make([]int64, len(v))
	for i, b := range v {
		out[i] = b >> 20
	}
	return out
}

// rss is an instance's resident memory in bytes, from /proc.
func rss(tb testing.TB, p *instance) int64 {
	tb.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.cmd.Process.Pid))
	if err != nil {
		tb.Fatalf("%s: %v", p.name, err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return kb << 10
		}
	}
	tb.Fatalf("%s: no VmRSS in /proc", p.name)
	return 0
}

// recordLoad keeps a load's figures for RELIABILITY.md.
func recordLoad(tb testing.TB, figures string) {
	status := "passed"
	if tb.Failed() {
		status = "FAILED"
	}
	tally.mu.Lock()
	tally.load = append(tally.load, status+": "+figures)
	tally.mu.Unlock()
}
