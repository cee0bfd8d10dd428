package rpc_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/uuid"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/parleyhq/parley/internal/apitest"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
)

// rawMessage is a request or answer as bytes, so that a test can send what
// a generated client refuses to encode.
type rawMessage struct{ data []byte }

// rawCodec sends rawMessages as they are, under a real codec's name.
type rawCodec struct{ name string }

func (c rawCodec) Name() string                  { return c.name }
func (c rawCodec) Marshal(v any) ([]byte, error) { return v.(*rawMessage).data, nil }
func (c rawCodec) Unmarshal(b []byte, v any) error {
	v.(*rawMessage).data = bytes.Clone(b)
	return nil
}

// stringField is a string somewhere in a request type: the path the server
// names it by when it holds value, and how to set it.
type stringField struct {
	path func(value string) string
	set  func(m protoreflect.Message, value string)
}

func fixedPath(path string) func(string) string { return func(string) string { return path } }

// stringFields lists every string field of md, at any depth: a repeated
// one as its first element, a map as its entry with key "k" (and, for
// string keys, the key itself), so that any field a request gains is in
// the test.
func stringFields(md protoreflect.MessageDescriptor, prefix string, depth int) []stringField {
	if depth > 3 { // recursive types
		return nil
	}
	var out []stringField
	fields := md.Fields()
	for i := range fields.Len() {
		fd := fields.Get(i)
		path := string(fd.Name())
		if prefix != "" {
			path = prefix + "." + path
		}
		switch {
		case fd.IsMap():
			key := fd.MapKey().Default().MapKey()
			if fd.MapKey().Kind() == protoreflect.StringKind {
				key = protoreflect.ValueOfString("k").MapKey()
				out = append(out, stringField{
					path: func(value string) string { return fmt.Sprintf("%s[%q]", path, value) },
					set: func(m protoreflect.Message, value string) {
						entries := m.Mutable(fd).Map()
						entries.Set(protoreflect.ValueOfString(value).MapKey(), entries.NewValue())
					},
				})
			}
			entry := fmt.Sprintf("%s[%q]", path, key.String())
			switch fd.MapValue().Kind() {
			case protoreflect.StringKind:
				out = append(out, stringField{fixedPath(entry), func(m protoreflect.Message, value string) {
					m.Mutable(fd).Map().Set(key, protoreflect.ValueOfString(value))
				}})
			case protoreflect.MessageKind:
				for _, f := range stringFields(fd.MapValue().Message(), entry, depth+1) {
					out = append(out, stringField{f.path, func(m protoreflect.Message, value string) {
						entries := m.Mutable(fd).Map()
						v := entries.NewValue()
						f.set(v.Message(), value)
						entries.Set(key, v)
					}})
				}
			}
		case fd.IsList() && fd.Kind() == protoreflect.StringKind:
			out = append(out, stringField{fixedPath(path + "[0]"), func(m protoreflect.Message, value string) {
				m.Mutable(fd).List().Append(protoreflect.ValueOfString(value))
			}})
		case fd.IsList() && fd.Kind() == protoreflect.MessageKind:
			for _, f := range stringFields(fd.Message(), path+"[0]", depth+1) {
				out = append(out, stringField{f.path, func(m protoreflect.Message, value string) {
					list := m.Mutable(fd).List()
					v := list.NewElement()
					f.set(v.Message(), value)
					list.Append(v)
				}})
			}
		case fd.Kind() == protoreflect.StringKind:
			out = append(out, stringField{fixedPath(path), func(m protoreflect.Message, value string) {
				m.Set(fd, protoreflect.ValueOfString(value))
			}})
		case fd.Kind() == protoreflect.MessageKind:
			for _, f := range stringFields(fd.Message(), path, depth+1) {
				out = append(out, stringField{f.path, func(m protoreflect.Message, value string) {
					f.set(m.Mutable(fd).Message(), value)
				}})
			}
		}
	}
	return out
}

// requestMethods lists every method of every service in package
// parley.v1, from the registered descriptors.
func requestMethods(tb testing.TB) []protoreflect.MethodDescriptor {
	tb.Helper()
	var out []protoreflect.MethodDescriptor
	protoregistry.GlobalFiles.RangeFilesByPackage("parley.v1", func(f protoreflect.FileDescriptor) bool {
		for i := range f.Services().Len() {
			methods := f.Services().Get(i).Methods()
			for j := range methods.Len() {
				out = append(out, methods.Get(j))
			}
		}
		return true
	})
	if len(out) == 0 {
		tb.Fatal("no parley.v1 methods registered")
	}
	return out
}

// callRaw calls method with the encoded request data over protocol, as
// user, and returns the call's error (a stream's, for streams).
func callRaw(ctx context.Context, tb testing.TB, env *apitest.Env, user uuid.UUID, protocol string, method protoreflect.MethodDescriptor, data []byte) error {
	tb.Helper()
	codec := "proto"
	if protocol == "connect+json" {
		codec = "json"
	}
	path := "/" + string(method.Parent().FullName()) + "/" + string(method.Name())
	opts := append(apitest.ClientOptions(protocol), connect.WithCodec(rawCodec{codec}), connect.WithInterceptors(apitest.Bearer(env.Token(tb, user))))
	client := connect.NewClient[rawMessage, rawMessage](apitest.HTTPClientFor(protocol), env.URL+path, opts...)
	req := connect.NewRequest(&rawMessage{data})
	if !method.IsStreamingServer() {
		_, err := client.CallUnary(ctx, req)
		return err
	}
	stream, err := client.CallServerStream(ctx, req)
	if err != nil {
		return err
	}
	defer stream.Close()
	for stream.Receive() {
	}
	return stream.Err()
}

// encode returns the request with field set to s, in protocol's encoding.
func encode(tb testing.TB, method protoreflect.MethodDescriptor, field stringField, s, protocol string) []byte {
	tb.Helper()
	mt, err := protoregistry.GlobalTypes.FindMessageByName(method.Input().FullName())
	if err != nil {
		tb.Fatal(err)
	}
	msg := mt.New()
	field.set(msg, s)
	var data []byte
	if protocol == "connect+json" {
		data, err = protojson.Marshal(msg.Interface())
	} else {
		data, err = proto.Marshal(msg.Interface())
	}
	if err != nil {
		tb.Fatal(err)
	}
	return data
}

// TestStringFieldsRefuseNUL: every string field of every request (found in
// the descriptors, so a new one is covered), sent with a NUL character
// over every protocol, answers invalid_argument naming the field, before
// the handler runs; and one that is not valid UTF-8 answers
// invalid_argument too (naming the field over the binary protocols; JSON
// cannot carry invalid UTF-8 at all, so there the body fails to parse and
// the message says where).
func TestStringFieldsRefuseNUL(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	user := uuid.New()
	const nul, marker, broken = "a\x00b", "zz\x01zz", "zz\xffzz"
	for _, method := range requestMethods(t) {
		fields := stringFields(method.Input(), "", 0)
		for _, field := range fields {
			for _, protocol := range apitest.Protocols {
				t.Run(fmt.Sprintf("%s/%s/%s", method.Name(), field.path(nul), protocol), func(t *testing.T) {
					t.Parallel()
					// Each subtest's own deadline: hundreds of them wait
					// their turn for a parallel slot.
					ctx := testCtx(t)
					err := callRaw(ctx, t, env, user, protocol, method, encode(t, method, field, nul, protocol))
					want := field.path(nul) + ": must not contain NUL characters (U+0000)"
					var ce *connect.Error
					if connect.CodeOf(err) != connect.CodeInvalidArgument || !errors.As(err, &ce) || ce.Message() != want {
						t.Errorf("NUL: err = %v, want invalid_argument %q", err, want)
					}

					// The same field, not valid UTF-8: encoded valid with a
					// marker, which is then broken on the wire.
					data := encode(t, method, field, marker, protocol)
					wantPart := field.path(broken) + ": must be valid UTF-8"
					if protocol == "connect+json" {
						data = bytes.Replace(data, []byte(`zz\u0001zz`), []byte(broken), 1)
						wantPart = "invalid UTF-8"
					} else {
						data = bytes.Replace(data, []byte(marker), []byte(broken), 1)
					}
					err = callRaw(ctx, t, env, user, protocol, method, data)
					if connect.CodeOf(err) != connect.CodeInvalidArgument || !errors.As(err, &ce) || !strings.Contains(ce.Message(), wantPart) {
						t.Errorf("invalid UTF-8: err = %v, want invalid_argument mentioning %q", err, wantPart)
					}
				})
			}
		}
		if len(fields) == 0 {
			t.Logf("%s has no string fields", method.FullName())
		}
	}
}

// TestValidationAfterAuthentication: a caller without a valid token learns
// nothing about its request: it is refused as unauthenticated, before the
// message is even read.
func TestValidationAfterAuthentication(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			c := env.ChatClient(t, protocol, uuid.Nil)
			_, err := c.CreateConversation(testCtx(t), connect.NewRequest(&parleyv1.CreateConversationRequest{Title: "a\x00b"}))
			wantCode(t, err, connect.CodeUnauthenticated, "")
		})
	}
}
