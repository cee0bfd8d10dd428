package qstash_test

import (
	"testing"

	"github.com/parleyhq/parley/internal/qstash"
)

// FuzzReceiverVerify: a signature is accepted only for the body and URL it
// was made for, whatever the signature, body and URL a caller sends; and
// nothing panics.
func FuzzReceiverVerify(f *testing.F) {
	const current, next = "sig_current_key_0123456789", "sig_next_key_9876543210"
	const url = "https://parley.example/tasks/agent-step"
	body := []byte(`{"run_id":"r","step":"plan","attempt":1}`)
	signature, err := qstash.NewSigner(current).Sign(body, url)
	if err != nil {
		f.Fatal(err)
	}
	r := qstash.NewReceiver(current, next)
	f.Add(signature, body, url)
	f.Add(signature, []byte(`{"run_id":"other"}`), url)
	f.Add(signature, body, "https://evil.example/tasks/agent-step")
	f.Add("", body, url)
	f.Add("a.b.c", []byte{}, "")
	f.Fuzz(func(t *testing.T, sig string, b []byte, u string) {
		if r.Verify(sig, b, u) != nil {
			return
		}
		if string(b) != string(body) || u != url {
			t.Fatalf("a signature verified for body %q and URL %q, which nobody signed", b, u)
		}
	})
}
