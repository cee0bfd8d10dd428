//go:build bench

package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"

	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/llm/llmtest"
)

// cachingPhaseTitle names the phase of issue 16's two measurements.
const cachingPhaseTitle = "12–13. HTTP caching and the response cache"

// measureConditionalGET compares a full read over Connect GET with the
// same read sent with the ETag it answered (a 304 without a body), on the
// same process, alternating as the unary rows do.
func measureConditionalGET(t *testing.T, cs callers, p *proc) comparison {
	ctx := t.Context()
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: unaryClients}}
	t.Cleanup(hc.CloseIdleConnections)
	urls := make([]string, len(cs.users))
	etags := make([]string, len(cs.users))
	for i, u := range cs.users {
		msg := fmt.Sprintf(`{"conversationId":%q}`, cs.convs[i].String())
		urls[i] = p.URL + "/parley.v1.ChatService/GetConversation?connect=v1&encoding=json&message=" + url.QueryEscape(msg)
		res, err := get(ctx, hc, urls[i], u.token, "")
		if err != nil {
			t.Fatal(err)
		}
		if res.StatusCode != http.StatusOK || res.Header.Get("Etag") == "" {
			t.Fatalf("GET %s: %d, etag %q", urls[i], res.StatusCode, res.Header.Get("Etag"))
		}
		etags[i] = res.Header.Get("Etag")
	}
	read := func(want int, conditional bool) func(ctx context.Context, i int) error {
		return func(ctx context.Context, i int) error {
			tag := ""
			if conditional {
				tag = etags[i]
			}
			res, err := get(ctx, hc, urls[i], cs.users[i].token, tag)
			if err != nil {
				return err
			}
			if res.StatusCode != want {
				return fmt.Errorf("status %d, want %d", res.StatusCode, want)
			}
			return nil
		}
	}
	return compare(ctx, "GetConversation over GET", read(http.StatusOK, false), read(http.StatusNotModified, true), p.pid(), p.pid())
}

// get sends one GET, reads its body to the end and closes it.
func get(ctx context.Context, hc *http.Client, url, token, ifNoneMatch string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if ifNoneMatch != "" {
		req.Header.Set("If-None-Match", ifNoneMatch)
	}
	res, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	_, _ = io.Copy(io.Discard, res.Body)
	res.Body.Close()
	return res, nil
}

// cacheTTFT is time to first token with the response cache on: answers
// whose request was answered before (hits) against answers to new ones
// (misses, which the paced fake model writes).
type cacheTTFT struct {
	hits, misses []time.Duration
}

const cacheRounds = 60

// measureCacheTTFT runs a process with RESPONSE_CACHE_TTL set and sends,
// alternately, a prompt it has answered before and a new one, each in a
// fresh conversation of the same user, one at a time.
func measureCacheTTFT(t *testing.T, r *rig) cacheTTFT {
	mock := llmtest.NewServer(t, llmtest.Paced())
	p := r.startParley(t, "parley-cache", r.parleyEnv(r.dbURL, mock.URL, "RESPONSE_CACHE_TTL", "10m"))
	defer p.stop()
	users := newUsers(t, r.auth, r.store, []int{2*cacheRounds + 2}, "cache")
	u := users[0]
	c := u.client(h2cClient(), p.URL)
	ctx := t.Context()
	ttft := func(prompt string) time.Duration {
		conv, err := u.conversation(ctx)
		if err != nil {
			t.Fatal(err)
		}
		begin := time.Now()
		s, err := c.SendMessage(ctx, connect.NewRequest(&parleyv1.SendMessageRequest{ConversationId: conv.String(), Content: prompt}))
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		var first time.Duration
		for s.Receive() {
			if d := s.Msg().GetDelta(); d != nil && first == 0 {
				first = time.Since(begin)
			}
		}
		if err := s.Err(); err != nil || first == 0 {
			t.Fatalf("answer to %q: %v (first delta after %v)", prompt, err, first)
		}
		return first
	}
	const cached = "What is a good name for a cat?"
	ttft(cached) // the miss that fills the cache
	var out cacheTTFT
	for i := range cacheRounds {
		out.hits = append(out.hits, ttft(cached))
		out.misses = append(out.misses, ttft(fmt.Sprintf("What is a good name for cat number %d?", i)))
	}
	if n := len(mock.Requests()); n != cacheRounds+1 {
		t.Errorf("the model was asked %d times, want %d (every hit served from the cache)", n, cacheRounds+1)
	}
	return out
}

func cachingSection(get comparison, c cacheTTFT) (rows []summaryRow, details string) {
	var b strings.Builder
	b.WriteString("**Conditional GET.** The unary rows' callers and process: ")
	fmt.Fprintf(&b, "%d callers, each a different user, read their conversation with `GetConversation` over Connect GET (JSON, HTTP/1.1 keep-alive), %d runs of %v each, alternating. ", unaryClients, unaryRounds, unaryWindow)
	b.WriteString("The full read answers 200 with the conversation, its ETag and `Cache-Control: private, no-cache`; the conditional one sends that ETag in `If-None-Match` and gets 304 with no body. The read still runs (the tag is a hash of the response), so the 304 saves encoding, compression and transfer, not the query.\n\n")
	b.WriteString("| read | calls/s | CPU per call, µs |\n|---|---|---|\n")
	var fc, cc cpuSnapshot
	var fn, cn int64
	for i := range get.base {
		fc, fn = fc.add(get.base[i].cpu), fn+get.base[i].calls
		cc, cn = cc.add(get.target[i].cpu), cn+get.target[i].calls
	}
	fmt.Fprintf(&b, "| full GET (200) | %s | %s |\n| conditional GET that hits (304) | %s | %s |\n\n",
		get.rate(get.base).format(num), fc.per(int(fn)), get.rate(get.target).format(num), cc.per(int(cn)))
	measured := fmt.Sprintf("%s of the full read's calls/s (%s vs %s)", get.ratio().format(pct), num(get.rate(get.target).Med), num(get.rate(get.base).Med))
	if errs := get.errors(); len(errs) > 0 {
		measured += "; errors: " + strings.Join(errs, "; ")
	}
	rows = append(rows, summaryRow{num: 12, figure: "Conditional GET that hits (304) against a full read", baseline: "full GET of the same read", target: "— (reported)", measured: measured, verdict: verdictReported})

	fmt.Fprintf(&b, "**Response cache.** A process of its own with `RESPONSE_CACHE_TTL=10m` (so temperature 0) and the paced fake model (its first chunk after 20 ms). One user sends, one at a time in fresh conversations, %d times a prompt answered before (a hit) alternating with %d new prompts (misses), after one miss that fills the cache. Time to first token is from the call to the first delta, at the client.\n\n", cacheRounds, cacheRounds)
	b.WriteString("| answer | p50 | p99 |\n|---|---|---|\n")
	fmt.Fprintf(&b, "| miss (the model writes it) | %s | %s |\n| hit (from the cache) | %s | %s |\n",
		ms(msOf(percentile(c.misses, 50))), ms(msOf(percentile(c.misses, 99))), ms(msOf(percentile(c.hits, 50))), ms(msOf(percentile(c.hits, 99))))
	rows = append(rows, summaryRow{num: 13, figure: "Time to first token on a response-cache hit", baseline: "a miss on the same process", target: "— (reported)",
		measured: fmt.Sprintf("p50 %s, p99 %s (miss: p50 %s, p99 %s)", ms(msOf(percentile(c.hits, 50))), ms(msOf(percentile(c.hits, 99))), ms(msOf(percentile(c.misses, 50))), ms(msOf(percentile(c.misses, 99)))),
		verdict:  verdictReported})
	return rows, b.String()
}
