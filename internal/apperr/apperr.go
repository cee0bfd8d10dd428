// Package apperr defines the one error type that domain packages return to
// say what went wrong in terms a client can act on. The RPC layer maps each
// Code to a wire code in a single table; any other error is internal, logged
// in full and shown to clients only as "internal error".
package apperr

import (
	"errors"
	"fmt"
)

// Code classifies an application error.
type Code string

// The codes domain packages use. Each maps to exactly one Connect code.
const (
	Invalid            Code = "invalid"             // the input is malformed; Field names it
	NotFound           Code = "not_found"           // absent, or owned by someone else
	Conflict           Code = "conflict"            // the write collides with existing state
	FailedPrecondition Code = "failed_precondition" // the state does not allow it now
	Aborted            Code = "aborted"             // a concurrent write won; re-read and retry
	Unauthenticated    Code = "unauthenticated"     // no valid credentials
	PermissionDenied   Code = "permission_denied"   // valid credentials, not allowed
	ResourceExhausted  Code = "resource_exhausted"  // a limit or quota is used up
	Unavailable        Code = "unavailable"         // a dependency is down; retrying may help
	DeadlineExceeded   Code = "deadline_exceeded"   // it took too long
	Canceled           Code = "canceled"            // the caller gave up
	Internal           Code = "internal"            // a bug or an unexpected failure
)

// Error is an application error with a client-safe message.
type Error struct {
	Code    Code
	Field   string // the request field at fault, for Invalid
	Message string // safe to show to a client
	// RetryAfter, when positive, tells the client how long to wait (seconds).
	RetryAfter int
	// Err is the underlying cause; it is logged, never shown to clients.
	Err error
}

// Error implements error.
func (e *Error) Error() string {
	msg := e.Message
	if e.Field != "" {
		msg = e.Field + ": " + msg
	}
	if e.Err != nil {
		return msg + ": " + e.Err.Error()
	}
	return msg
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// InvalidField reports a malformed request field.
func InvalidField(field, format string, args ...any) *Error {
	return &Error{Code: Invalid, Field: field, Message: fmt.Sprintf(format, args...)}
}

// New returns an Error with the given code and client-safe message.
func New(code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...)}
}

// Wrap returns an Error with the given code and message whose cause is err.
func Wrap(err error, code Code, format string, args ...any) *Error {
	return &Error{Code: code, Message: fmt.Sprintf(format, args...), Err: err}
}

// CodeOf returns the code of the first *Error in err's chain, or Internal.
func CodeOf(err error) Code {
	if err == nil {
		return ""
	}
	var e *Error
	if errors.As(err, &e) {
		return e.Code
	}
	return Internal
}

// IsNotFound reports whether err is a NotFound application error.
func IsNotFound(err error) bool { return CodeOf(err) == NotFound }
