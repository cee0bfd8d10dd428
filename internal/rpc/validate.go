package rpc

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"connectrpc.com/connect"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	"github.com/parleyhq/parley/internal/apperr"
)

// NewValidationInterceptor returns an interceptor that refuses, with
// apperr Invalid naming the field, any request holding a string that
// PostgreSQL's text cannot store: one with a NUL character (U+0000), or one
// that is not valid UTF-8. Protobuf already refuses invalid UTF-8 in proto3
// strings as it parses (see BinaryCodec), and JSON cannot carry it, but
// "\u0000" is valid in both and would otherwise come back from the
// database as an internal error. Every string of every request is checked,
// nested, repeated and map fields included, so a new field needs no code.
//
// It belongs after authentication (a caller without a valid token learns
// nothing about what it sent) and inside the error interceptor, which
// turns the apperr into invalid_argument. A streaming handler's request is
// checked as the handler receives it.
func NewValidationInterceptor() connect.Interceptor { return validator{} }

type validator struct{}

func (validator) WrapUnary(next connect.UnaryFunc) connect.UnaryFunc {
	return func(ctx context.Context, req connect.AnyRequest) (connect.AnyResponse, error) {
		if m, ok := req.Any().(proto.Message); ok && !req.Spec().IsClient {
			if err := CheckStrings(m); err != nil {
				return nil, err
			}
		}
		return next(ctx, req)
	}
}

func (validator) WrapStreamingClient(next connect.StreamingClientFunc) connect.StreamingClientFunc {
	return next
}

func (validator) WrapStreamingHandler(next connect.StreamingHandlerFunc) connect.StreamingHandlerFunc {
	return func(ctx context.Context, conn connect.StreamingHandlerConn) error {
		return next(ctx, validatingConn{conn})
	}
}

// validatingConn checks each message as the handler receives it.
type validatingConn struct{ connect.StreamingHandlerConn }

func (c validatingConn) Receive(msg any) error {
	if err := c.StreamingHandlerConn.Receive(msg); err != nil {
		return receiveError(err)
	}
	if m, ok := msg.(proto.Message); ok {
		return CheckStrings(m)
	}
	return nil
}

// receiveError is err, from reading a request message, with connect-go's
// internal answers to a request it cannot frame (an envelope prefix or
// message cut short, flags a request may not carry, an end-of-stream frame
// that is not JSON, the compressed flag without a compression) made
// invalid_argument: the client's bytes are at fault, and a client's
// mistake must not count as the server's. Reading the request involves
// nothing else that could fail inside the server; the body's limits and
// deadline already answer with their own codes.
func receiveError(err error) error {
	var ce *connect.Error
	if errors.As(err, &ce) && ce.Code() == connect.CodeInternal {
		return connect.NewError(connect.CodeInvalidArgument, fmt.Errorf("malformed request stream: %s", ce.Message()))
	}
	return err
}

// CheckStrings returns apperr Invalid, naming the field, for the first
// string in m (at any depth) that holds a NUL character or is not valid
// UTF-8. Fields are named by their proto names, as in the rest of Parley's
// errors: "content", "parent.title", "tags[2]", `labels["k"]`.
func CheckStrings(m proto.Message) error {
	return checkMessage(m.ProtoReflect(), "")
}

func checkMessage(m protoreflect.Message, prefix string) error {
	var err error
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		err = checkField(fd, v, fieldPath(prefix, fd))
		return err == nil
	})
	return err
}

func checkField(fd protoreflect.FieldDescriptor, v protoreflect.Value, path string) error {
	switch {
	case fd.IsList():
		list := v.List()
		for i := range list.Len() {
			if err := checkValue(fd, list.Get(i), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case fd.IsMap():
		var err error
		v.Map().Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
			// The entry's path shows its key, quoted: the key itself may be
			// what is wrong.
			entry := fmt.Sprintf("%s[%q]", path, k.String())
			if fd.MapKey().Kind() == protoreflect.StringKind {
				if err = checkString(k.String(), entry); err != nil {
					return false
				}
			}
			err = checkValue(fd.MapValue(), v, entry)
			return err == nil
		})
		return err
	default:
		return checkValue(fd, v, path)
	}
	return nil
}

// checkValue checks one value of field fd: a string, or a message to walk.
func checkValue(fd protoreflect.FieldDescriptor, v protoreflect.Value, path string) error {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return checkString(v.String(), path)
	case protoreflect.MessageKind, protoreflect.GroupKind:
		return checkMessage(v.Message(), path)
	}
	return nil
}

func checkString(s, path string) error {
	if strings.IndexByte(s, 0) >= 0 {
		return apperr.InvalidField(path, "must not contain NUL characters (U+0000)")
	}
	if !utf8.ValidString(s) {
		return apperr.InvalidField(path, "must be valid UTF-8")
	}
	return nil
}

// fieldPath names fd inside the field at prefix.
func fieldPath(prefix string, fd protoreflect.FieldDescriptor) string {
	name := string(fd.Name())
	if fd.IsExtension() {
		name = "[" + string(fd.FullName()) + "]"
	}
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}
