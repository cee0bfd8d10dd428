package main

import (
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"connectrpc.com/connect"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apitest"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/internal/pgtest"
)

var tokenLine = regexp.MustCompile(`(?m)^export TOKEN=(\S+)$`)

func startDev(t *testing.T, dataDir string) (*started, string) {
	t.Helper()
	s := start(t, map[string]string{"PORT": "0", "DATABASE_URL": pgtest.NewDatabase(t)}, "dev", "--data-dir", dataDir)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if m := tokenLine.FindStringSubmatch(s.Stdout.String()); m != nil {
			return s, m[1]
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("dev printed no token:\n%s", s.Stdout)
	return nil, ""
}

func TestDevAndToken(t *testing.T) {
	t.Parallel()
	dataDir := t.TempDir()
	s, devToken := startDev(t, dataDir)
	ctx := context.Background()

	dev := parleyv1connect.NewChatServiceClient(apitest.H2CClient(), s.URL, connect.WithGRPC(), connect.WithInterceptors(apitest.Bearer(devToken)))
	if _, err := dev.CreateConversation(ctx, connect.NewRequest(&parleyv1.CreateConversationRequest{Title: "dev"})); err != nil {
		t.Fatal(err)
	}

	// `parley token` signs with the same key: its token works against dev.
	var stdout, stderr output
	user := uuid.New()
	if err := run(ctx, []string{"parley", "token", "--sub", user.String(), "--data-dir", dataDir}, func(string) string { return "" }, &stdout, &stderr); err != nil {
		t.Fatal(err)
	}
	token := strings.TrimSpace(stdout.String())
	if strings.Count(stdout.String(), "\n") != 1 || strings.Count(token, ".") != 2 {
		t.Fatalf("token output is not one JWT alone on stdout: %q", stdout.String())
	}
	other := parleyv1connect.NewChatServiceClient(apitest.H2CClient(), s.URL, connect.WithInterceptors(apitest.Bearer(token)))
	list, err := other.ListConversations(ctx, connect.NewRequest(&parleyv1.ListConversationsRequest{}))
	if err != nil {
		t.Fatal(err)
	}
	if len(list.Msg.Conversations) != 0 {
		t.Errorf("a new user sees %d conversations of the dev user", len(list.Msg.Conversations))
	}
	if _, err := os.Stat(filepath.Join(dataDir, "dev-signing-key.pem")); err != nil {
		t.Errorf("signing key not kept in the data dir: %v", err)
	}
}

// TestREADMECurlExamples runs the README's curl examples against `parley
// dev`, so they cannot rot. The examples sit between the markers
// <!-- curl-examples:start --> and <!-- curl-examples:end -->; they are run
// in order in one bash script, with the server's real address and a fresh
// token.
func TestREADMECurlExamples(t *testing.T) {
	t.Parallel()
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s is needed to run the README examples: apt-get install %s", tool, tool)
		}
	}
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	script := readmeExamples(t, string(readme))
	s, token := startDev(t, t.TempDir())
	script = strings.ReplaceAll(script, "http://localhost:8080", s.URL)

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	// Each curl also reports its HTTP status on stderr, so the test can tell
	// the examples that must succeed from the ones that fail on purpose.
	cmd := exec.CommandContext(ctx, "bash", "-c", "set -euo pipefail\ncurl() { command curl -w '%{stderr}HTTP %{http_code}\\n' \"$@\"; }\n"+script)
	cmd.Env = append(os.Environ(), "TOKEN="+token)
	cmd.Dir = "../.." // go tool buf runs in the module
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("README examples failed: %v\nscript:\n%s\nstdout:\n%s\nstderr:\n%s", err, script, &stdout, &stderr)
	}
	statuses := regexp.MustCompile(`HTTP (\d{3})`).FindAllStringSubmatch(stderr.String(), -1)
	onPurpose := strings.Count(script, "fails on purpose")
	notModified := strings.Count(script, "answers 304 on purpose")
	var failed, got304 int
	for _, m := range statuses {
		switch m[1] {
		case "200":
		case "304":
			got304++
		default:
			failed++
		}
	}
	if len(statuses) != strings.Count(script, "curl -sS") || failed != onPurpose || got304 != notModified {
		t.Fatalf("%d curl calls answered, %d of them failed and %d not modified; want %d calls, exactly %d failures (marked \"fails on purpose\") and %d 304s (\"answers 304 on purpose\")\nstdout:\n%s\nstderr:\n%s",
			len(statuses), failed, got304, strings.Count(script, "curl -sS"), onPurpose, notModified, &stdout, &stderr)
	}
	// Streams answer HTTP 200 and carry errors in their last frame: check
	// that the streaming examples really streamed and completed.
	out := stdout.String()
	for _, want := range []string{"HTTP/1.1 304 Not Modified", `"delta":`, `"completed":`, `"role":"ROLE_ASSISTANT","status":"MESSAGE_STATUS_COMPLETED"`,
		// The offline model writes an artifact through the tool path
		// (protojson's spacing varies, so keys are matched alone).
		`"toolCall":`, `"artifactDelta":`, `"toolResult":`, `"artifactId":`, `"toolUses":`} {
		if !strings.Contains(out, want) {
			t.Errorf("README examples' output lacks %s:\n%s", want, out)
		}
	}
	if strings.Contains(out, `"error"`) {
		t.Errorf("a README example ended with an error:\n%s", out)
	}
	// The first streamed answer (one JSON object per line from the curl
	// example) is the answer ListMessages shows as saved.
	var streamed, saved string
	firstDone := false
	for _, line := range strings.Split(out, "\n") {
		var ev struct {
			Delta   *struct{ Text string }
			Role    string
			Content string
		}
		// The completed event ends the first stream; its line carries the
		// next frame's flag byte, so it is found as text, not parsed.
		firstDone = firstDone || strings.Contains(line, `"completed":`)
		if json.Unmarshal([]byte(line), &ev) != nil {
			continue
		}
		if ev.Delta != nil && !firstDone {
			streamed += ev.Delta.Text
		}
		if ev.Role == "ROLE_ASSISTANT" && saved == "" {
			saved = ev.Content
		}
	}
	if streamed == "" || streamed != saved {
		t.Errorf("streamed %q, but ListMessages saved %q", streamed, saved)
	}
	if strings.Contains(stdout.String(), `"code":"internal"`) {
		t.Errorf("an example answered internal:\n%s", &stdout)
	}
	t.Logf("README examples output:\n%s", &stdout)
}

var fence = regexp.MustCompile("(?s)```(?:sh|bash)\n(.*?)```")

func readmeExamples(tb testing.TB, readme string) string {
	tb.Helper()
	_, rest, ok := strings.Cut(readme, "<!-- curl-examples:start -->")
	section, _, ok2 := strings.Cut(rest, "<!-- curl-examples:end -->")
	if !ok || !ok2 {
		tb.Fatal("README.md has no curl-examples section")
	}
	var b strings.Builder
	for _, m := range fence.FindAllStringSubmatch(section, -1) {
		for _, line := range strings.Split(m[1], "\n") {
			// The reader gets a token from `make dev`'s banner; the test has its own.
			if strings.HasPrefix(strings.TrimSpace(line), "export TOKEN=") {
				continue
			}
			b.WriteString(line + "\n")
		}
	}
	if !strings.Contains(b.String(), "curl") {
		tb.Fatal("README curl-examples section holds no curl command")
	}
	return b.String()
}
