// Package qstash speaks Upstash QStash's HTTP API, so that Parley can hand durable
// agent steps to QStash and have them pushed back to one of its own endpoints.
//
// The pieces and how they fit:
//
//   - [Publisher] sends a [Message] to QStash (POST /v2/publish/{destination}); QStash
//     stores it and later POSTs the body to the destination, retrying until a 2xx.
//   - QStash signs each delivery with an HS256 JWT in the Upstash-Signature header.
//     [Receiver] checks it against the current signing key, then the next one (QStash
//     rotates keys by promoting "next" to "current").
//   - [NewHandler] is the destination endpoint: it caps and reads the raw body, verifies
//     the signature, refuses a message id it has already run ([Replays]) and passes the
//     body to a Deliver function. Its status codes tell QStash what to do next: 2xx stop,
//     5xx retry later, 489 with Upstash-NonRetryable-Error stop and dead-letter.
//   - [Signer] signs exactly as QStash does; the local stand-in in package qstashtest and
//     the cross-check against the official npm Receiver use it.
//
// No Go SDK of QStash is used: the wire format here follows QStash's documentation and
// the @upstash/qstash 2.x source, and testdata/node runs that package's Receiver
// against tokens made here (TestOfficialReceiverAgrees).
package qstash
