package qstash_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/parleyhq/parley/internal/qstash"
)

// nodeDir holds the pinned @upstash/qstash and jose the cross-check runs.
const nodeDir = "testdata/node"

const nodeInstructions = "run `make node-deps` (or `npm ci --prefix internal/qstash/testdata/node`) from the repository root"

type nodeCheck struct {
	Name      string `json:"name"`
	Signature string `json:"signature"`
	Body      string `json:"body"`
	URL       string `json:"url"`
	want      bool
}

// TestOfficialReceiverAgrees runs @upstash/qstash's own Receiver on tokens made by
// Signer, and this package's Receiver on tokens made in Node the way QStash makes
// them, so that a misreading of the wire format shows up here and not in production.
func TestOfficialReceiverAgrees(t *testing.T) {
	t.Parallel()
	node, err := exec.LookPath("node")
	if err != nil {
		t.Fatalf("node is not installed: install Node.js 18 or later (Debian: apt-get install nodejs npm), then %s", nodeInstructions)
	}
	if _, err := os.Stat(filepath.Join(nodeDir, "node_modules", "@upstash", "qstash", "package.json")); err != nil {
		t.Fatalf("%s/node_modules is missing: %s", nodeDir, nodeInstructions)
	}

	const url = "https://parley.example/internal/qstash/step?run=7"
	// Non-ASCII on purpose: the npm Receiver hashes the UTF-8 of a string body.
	body := `{"step":"s_1","text":"héllo — ✓"}`
	sign := func(key string, at time.Time) string {
		s, err := qstash.NewSigner(key).SignAt([]byte(body), url, at)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	now := time.Now()
	checks := []nodeCheck{
		{Name: "current key", Signature: sign(currentKey, now), Body: body, URL: url, want: true},
		{Name: "next key", Signature: sign(nextKey, now), Body: body, URL: url, want: true},
		{Name: "tampered body", Signature: sign(currentKey, now), Body: body + " ", URL: url, want: false},
		{Name: "wrong url", Signature: sign(currentKey, now), Body: body, URL: url + "&run=8", want: false},
		{Name: "wrong key", Signature: sign("sig_someone_else", now), Body: body, URL: url, want: false},
		{Name: "expired", Signature: sign(currentKey, now.Add(-10*time.Minute)), Body: body, URL: url, want: false},
	}
	request, err := json.Marshal(map[string]any{
		"currentSigningKey": currentKey,
		"nextSigningKey":    nextKey,
		"checks":            checks,
		"sign":              map[string]string{"key": currentKey, "url": url, "body": body},
	})
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, "check.mjs")
	cmd.Dir = nodeDir
	cmd.Stdin = bytes.NewReader(request)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("node check.mjs: %v\n%s\n(if a module is missing: %s)", err, stderr.String(), nodeInstructions)
	}
	var result struct {
		QStashVersion string `json:"qstashVersion"`
		Checks        []struct {
			Name     string `json:"name"`
			Accepted bool   `json:"accepted"`
			Error    string `json:"error"`
		} `json:"checks"`
		Signed map[string]string `json:"signed"`
	}
	if err := json.Unmarshal(out, &result); err != nil {
		t.Fatalf("node check.mjs printed %q: %v", out, err)
	}
	t.Logf("@upstash/qstash %s", result.QStashVersion)

	t.Run("OfficialReceiverOnOurTokens", func(t *testing.T) {
		if len(result.Checks) != len(checks) {
			t.Fatalf("node answered %d checks, want %d", len(result.Checks), len(checks))
		}
		for i, got := range result.Checks {
			if got.Accepted != checks[i].want {
				t.Errorf("%s: official Receiver accepted=%v (%s), want %v", got.Name, got.Accepted, got.Error, checks[i].want)
			} else if !got.Accepted {
				t.Logf("%s: refused as wanted: %s", got.Name, got.Error)
			}
		}
	})
	t.Run("OurReceiverOnQStashStyleTokens", func(t *testing.T) {
		r := qstash.NewReceiver(currentKey, nextKey)
		for _, form := range []string{"padded", "unpadded"} {
			signature := result.Signed[form]
			if err := r.Verify(signature, []byte(body), url); err != nil {
				t.Errorf("%s body hash: Verify = %v", form, err)
			}
			if err := r.Verify(signature, []byte(body+" "), url); !errors.Is(err, qstash.ErrBodyMismatch) {
				t.Errorf("%s body hash, tampered body: Verify = %v, want ErrBodyMismatch", form, err)
			}
		}
	})
}
