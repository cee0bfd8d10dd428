//go:build linux && amd64 && !race

// The stack sizes this file checks are those of a production build on
// linux/amd64, the platform Parley is deployed on (Cloud Run): frame sizes
// differ by architecture, and the race detector adds to every frame and
// doubles the runtime's stack guard, so under -race no waiting stack is
// ever halved. `make test` runs this file's test without -race too.

package rpc_test

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apitest"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/llm/llmtest"
)

// TestWaitingStacks holds answers that wait on the model and reads the
// stacks of the two goroutines of ours that each keeps: the stream's
// handler, waiting in relay for the next event, and the generation's,
// waiting in Recv for the provider. Both grow to 16 KiB while the answer
// starts. At each collection the runtime halves a stack whose goroutine
// uses less than a quarter of it, counting a guard of stackNosplit bytes
// (runtime/stack.go, shrinkstack), so a waiting goroutine is kept at 8 KiB
// only if what its stack holds from the wait down fits in 4 KiB minus the
// guard. The frames on the way to each wait are kept small for that (see
// relay, and streamTurn in package chat); a frame that grows past it costs
// 8 KiB per held answer.
//
// The handler's goroutine is checked as HTTP/2 serves it (h2c, as the
// bench and Cloud Run's end-to-end HTTP/2 do). Over HTTP/1.1 it holds
// 760 bytes more (net/http's connection loop, 1,120 bytes, in place of
// its HTTP/2 handler's frames), and is not halved.
func TestWaitingStacks(t *testing.T) {
	const (
		n            = 8
		stackNosplit = 800 // internal/abi.StackNosplitBase, linux/amd64
		fits         = 16<<10/4 - stackNosplit
	)
	fake := llmtest.NewServer(t, llmtest.Hold())
	env := fakeEnv(t, fake, apitest.Options{})
	ctx := testCtx(t)
	streams := make([]*connect.ServerStreamForClient[parleyv1.SendMessageResponse], n)
	for i := range streams {
		client := env.ChatClient(t, "grpc", uuid.New())
		s, err := send(ctx, client, create(t, client, "held").Id, "hold on")
		if err != nil {
			t.Fatal(err)
		}
		if !s.Receive() || s.Msg().GetStarted() == nil {
			t.Fatalf("answer %d: no started event: %v", i, s.Err())
		}
		streams[i] = s
	}
	// A request reaches the fake model before its answer is in Recv and
	// before the handler waits in relay: dump until every held answer's
	// two goroutines are in their waits.
	waits := []struct{ name, fn, wait string }{
		{"the stream's handler", "github.com/parleyhq/parley/internal/rpc.relay", "github.com/parleyhq/parley/internal/chat.(*localStream).Next"},
		{"the generation", "github.com/parleyhq/parley/internal/chat.(*generation).run", "github.com/parleyhq/parley/internal/llm.(*openAIStream).Recv"},
	}
	var waiting [][]waitingStack
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		all := dumpStacks(t)
		waiting = waiting[:0]
		ready := true
		for _, w := range waits {
			ws := stacksWith(stacksWith(all, w.fn), w.wait)
			ready = ready && len(ws) >= n
			waiting = append(waiting, ws)
		}
		if ready {
			break
		}
		if time.Now().After(deadline) {
			for i, w := range waits {
				t.Errorf("%s: %d goroutines wait in %s, want one per held answer (%d)", w.name, len(waiting[i]), w.wait, n)
			}
			t.FailNow()
		}
	}
	fake.Release(n * len(llmtest.DefaultChunks))
	for i, s := range streams {
		if _, err := collect(t, s, 2); err != nil {
			t.Fatalf("answer %d: %v", i, err)
		}
	}

	for i, wait := range waits {
		w := waiting[i][0]
		for _, o := range waiting[i][1:] {
			if o.used > w.used {
				w = o
			}
		}
		t.Logf("%s waits with %d bytes of stack (under %d to be halved)", wait.name, w.used, fits)
		if w.used >= fits {
			t.Errorf("%s waits with %d bytes of stack, over the %d that let the runtime halve its 16 KiB: a frame on the way to the wait grew.\n%s", wait.name, w.used, fits, w.frames())
		}
	}
}

// frames lists a stack's frames and their sizes, innermost first.
func (w waitingStack) frames() string {
	var b strings.Builder
	for i, f := range w.funcs {
		fmt.Fprintf(&b, "%6d  %.120s\n", w.sizes[i], f)
	}
	return b.String()
}
