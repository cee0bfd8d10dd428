package qstash_test

import (
	"bytes"
	"context"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/agent"
	"github.com/parleyhq/parley/internal/apitest"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/llm"
	"github.com/parleyhq/parley/internal/llm/llmtest"
	"github.com/parleyhq/parley/internal/pgtest"
	"github.com/parleyhq/parley/internal/qstash"
	"github.com/parleyhq/parley/internal/qstash/qstashtest"
)

const deliveryModel = "fake-model"

// qstashDeployment is two instances of one service on one database, both
// delivered to by one QStash stand-in, with the fake model they share.
type qstashDeployment struct {
	q         *qstashtest.Server
	model     *llmtest.Server
	instances [2]*apitest.Env
}

// newQStashDeployment starts it. The model's first answer fails (500),
// and a step's retry waits an hour, so the first step's second attempt
// is a task QStash holds and delivers only when the test does.
func newQStashDeployment(t *testing.T) *qstashDeployment {
	t.Helper()
	d := &qstashDeployment{
		q: qstashtest.New(t),
		model: llmtest.NewServer(t, llmtest.Respond(func(llmtest.RecordedRequest) llmtest.Turn {
			return llmtest.Turn{Chunks: []string{"The step", " is done."}}
		}), llmtest.Fail500(), llmtest.Times(1)),
	}
	dbURL := pgtest.NewDatabase(t)
	for i := range d.instances {
		d.instances[i] = apitest.New(t, apitest.Options{
			QStash:      d.q,
			DatabaseURL: dbURL,
			Provider:    llm.NewOpenAI(llm.OpenAIConfig{BaseURL: d.model.URL, APIKey: "sk-test", IdleTimeout: 5 * time.Second}),
			Models:      []string{deliveryModel},
			Agent: func(c *agent.RunnerConfig) {
				c.RetryBackoff = time.Hour
				c.FlushInterval = 20 * time.Millisecond
			},
		})
	}
	return d
}

// delivery is one QStash delivery: a message id and its body, signed for
// the instance it goes to.
type delivery struct {
	messageID string
	body      []byte
}

// sign signs d as QStash signs each of its attempts (a new token each
// time) for instance i's endpoint.
func (d *qstashDeployment) sign(t *testing.T, i int, body []byte) string {
	t.Helper()
	signature, err := qstash.NewSigner(d.q.CurrentKey()).Sign(body, d.instances[i].URL+qstash.AgentStepPath)
	if err != nil {
		t.Fatal(err)
	}
	return signature
}

// post delivers body under messageID and signature to instance i and
// returns the status; safe from any goroutine.
func (d *qstashDeployment) post(ctx context.Context, i int, messageID, signature string, body []byte) (int, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.instances[i].URL+qstash.AgentStepPath, bytes.NewReader(body))
	if err != nil {
		return 0, err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(qstash.HeaderSignature, signature)
	req.Header.Set(qstash.HeaderMessageID, messageID)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	res.Body.Close()
	return res.StatusCode, nil
}

// deliver signs and posts body to instance i, and wants status.
func (d *qstashDeployment) deliver(t *testing.T, i int, messageID string, body []byte, want int) {
	t.Helper()
	code, err := d.post(t.Context(), i, messageID, d.sign(t, i, body), body)
	if err != nil || code != want {
		t.Errorf("delivery of %s (%s) to instance %d: %d, %v; want %d", messageID, body, i, code, err, want)
	}
}

// published waits for the stand-in to have accepted n publishes and
// returns them. Publishing happens after the step's commit, with nothing
// to wait on, so it polls (for 10 s at most).
func (d *qstashDeployment) published(t *testing.T, n int) []qstashtest.PublishRequest {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		if pubs := d.q.Published(); len(pubs) >= n {
			return pubs
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d publishes within 10 s, want %d: %+v", len(d.q.Published()), n, d.q.Published())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// watch reads the run's events, from afterSeq, to its end.
func watch(t *testing.T, c interface {
	WatchRun(context.Context, *connect.Request[parleyv1.WatchRunRequest]) (*connect.ServerStreamForClient[parleyv1.WatchRunResponse], error)
}, runID string, afterSeq int64, until func(*parleyv1.WatchRunResponse) bool) []*parleyv1.WatchRunResponse {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	stream, err := c.WatchRun(ctx, connect.NewRequest(&parleyv1.WatchRunRequest{RunId: runID, AfterSeq: afterSeq}))
	if err != nil {
		t.Fatal(err)
	}
	defer stream.Close()
	var out []*parleyv1.WatchRunResponse
	for stream.Receive() {
		out = append(out, stream.Msg())
		if until != nil && until(stream.Msg()) {
			return out
		}
	}
	if err := stream.Err(); err != nil {
		t.Fatalf("watch: %v", err)
	}
	return out
}

// TestAgentStepDeliveries: QStash delivers at least once, to any instance,
// and may deliver a message again at the same moment (a retry racing a
// slow attempt), long after it ran, or an old attempt's message after a
// newer one. On two instances sharing a database, every model request is
// counted at the fake upstream:
//
//   - Concurrently: one pending step's message, delivered 6 times at once
//     (each attempt signed anew, three to each instance), runs the step
//     once: one model request, one attempt.
//   - Late: after the step has ended, the same message (a new token) is
//     acknowledged without running, and so is the same task under another
//     message id (the outbox relay publishing it again); a token already
//     handled, sent again, is a replay, refused.
//   - Out of order: attempt 1's task, delivered after attempt 2 ran, is
//     stale: acknowledged, nothing runs.
//
// Each time the run's events and the model's requests stay as they were.
func TestAgentStepDeliveries(t *testing.T) {
	t.Parallel()
	d := newQStashDeployment(t)
	user := uuid.New()
	c := d.instances[0].AgentClient(t, "connect+proto", user)
	res, err := c.StartRun(t.Context(), connect.NewRequest(&parleyv1.StartRunRequest{Goal: "Plan a trip"}))
	if err != nil {
		t.Fatal(err)
	}
	runID := res.Msg.GetRun().GetId()

	// Attempt 1 of the plan step fails at the model; attempt 2 is
	// published with an hour's delay.
	watch(t, c, runID, 0, func(ev *parleyv1.WatchRunResponse) bool { return ev.GetStepRetrying() != nil })
	pubs := d.published(t, 2)
	first, second := pubs[0], pubs[1]
	if !strings.Contains(string(first.Body), `"attempt":1`) || !strings.Contains(string(second.Body), `"attempt":2`) || second.Header.Get("Upstash-Delay") == "" {
		t.Fatalf("publishes: %s then %s (delay %q); want attempt 1, then attempt 2 delayed", first.Body, second.Body, second.Header.Get("Upstash-Delay"))
	}
	if n := len(d.model.Requests()); n != 1 {
		t.Fatalf("%d model requests after attempt 1, want 1", n)
	}

	// Concurrently: attempt 2's message, six times at once.
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	const copies = 6
	signatures := make([]string, copies)
	for k := range signatures {
		signatures[k] = d.sign(t, k%2, second.Body)
	}
	statuses, errs := make([]int, copies), make([]error, copies)
	start := make(chan struct{})
	var wg sync.WaitGroup
	for k := range copies {
		wg.Go(func() {
			<-start
			statuses[k], errs[k] = d.post(ctx, k%2, second.MessageID, signatures[k], second.Body)
		})
	}
	close(start)
	wg.Wait()
	ok := 0
	for k := range copies {
		switch {
		case errs[k] != nil:
			t.Errorf("delivery %d: %v", k, errs[k])
		case statuses[k] == http.StatusOK:
			ok++
		case statuses[k] != http.StatusInternalServerError:
			// 500 is "busy": another delivery holds the step; QStash
			// retries, and the retry is acknowledged (below).
			t.Errorf("delivery %d to instance %d: %d, want 200 or 500", k, k%2, statuses[k])
		}
	}
	if ok == 0 {
		t.Errorf("none of the %d deliveries answered 200: %v", copies, statuses)
	}

	// The run goes on through the stand-in's own deliveries to its end.
	evs := watch(t, c, runID, 0, nil)
	end := evs[len(evs)-1].GetRunFinished().GetRun()
	if end.GetStatus() != parleyv1.RunStatus_RUN_STATUS_SUCCEEDED {
		t.Fatalf("the run ended with %v", evs[len(evs)-1])
	}
	if s := end.GetSteps()[0]; s.GetAttempts() != 2 {
		t.Errorf("plan step: %d attempts, want 2", s.GetAttempts())
	}
	started := 0
	for _, ev := range evs {
		if ev.GetStepStarted() != nil {
			started++
		}
	}
	// One failed request, then one per step: five.
	const wantRequests = 1 + 5
	if n := len(d.model.Requests()); n != wantRequests || started != 6 {
		t.Fatalf("%d model requests and %d steps started; want %d and 6 (each step once, the plan step twice)", n, started, wantRequests)
	}

	// Late, and out of order, on either instance: each acknowledged, none
	// runs anything.
	for i := range 2 {
		d.deliver(t, i, second.MessageID, second.Body, http.StatusOK)              // QStash's retry of a message that ran
		d.deliver(t, i, "msg_relay_"+uuid.NewString(), second.Body, http.StatusOK) // the task again, as a new message
		d.deliver(t, i, first.MessageID, first.Body, http.StatusOK)                // attempt 1, after attempt 2
		d.deliver(t, i, "msg_old_"+uuid.NewString(), first.Body, http.StatusOK)    // attempt 1's task as a new message
	}
	// A token that was handled, played again (even under another message
	// id): a replay, refused.
	relayID, signature := "msg_relay_"+uuid.NewString(), d.sign(t, 1, second.Body)
	for k, want := range []int{http.StatusOK, http.StatusUnauthorized} {
		if code, err := d.post(t.Context(), 1, relayID, signature, second.Body); err != nil || code != want {
			t.Errorf("token sent %d times: %d, %v; want %d", k+1, code, err, want)
		}
	}
	if n := len(d.model.Requests()); n != wantRequests {
		t.Errorf("%d model requests after the late and stale deliveries, want %d still", n, wantRequests)
	}
	if after := watch(t, c, runID, 0, nil); len(after) != len(evs) {
		t.Errorf("the late and stale deliveries added %d events", len(after)-len(evs))
	}
}
