package rpc

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/dynamicpb"

	"github.com/parleyhq/parley/internal/apperr"
)

// BinaryCodec is connect-go's protobuf binary codec ("proto") with better
// errors: when a request does not parse because a string field is not
// valid UTF-8, the error names the field ("unmarshal message: title: must
// be valid UTF-8") where protobuf's says only "string field contains
// invalid UTF-8" and names the Go type. Install it on handlers with
// connect.WithCodec(rpc.BinaryCodec{}); it replaces the built-in one.
type BinaryCodec struct{}

// Name implements connect.Codec.
func (BinaryCodec) Name() string { return "proto" }

// Marshal implements connect.Codec.
func (BinaryCodec) Marshal(v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, errNotProto(v)
	}
	return proto.Marshal(m)
}

// MarshalAppend appends v's encoding to dst; connect uses it to reuse
// buffers.
func (BinaryCodec) MarshalAppend(dst []byte, v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, errNotProto(v)
	}
	return proto.MarshalOptions{}.MarshalAppend(dst, m)
}

// MarshalStable is deterministic output, which connect needs for requests
// sent as HTTP GET.
func (BinaryCodec) MarshalStable(v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, errNotProto(v)
	}
	return proto.MarshalOptions{Deterministic: true}.Marshal(m)
}

// IsBinary tells connect the encoding is not text.
func (BinaryCodec) IsBinary() bool { return true }

// Unmarshal implements connect.Codec.
func (BinaryCodec) Unmarshal(data []byte, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return errNotProto(v)
	}
	err := proto.Unmarshal(data, m)
	if err == nil {
		return nil
	}
	if path, found := invalidUTF8(data, m.ProtoReflect().Descriptor(), "", 0); found {
		return apperr.InvalidField(path, "must be valid UTF-8")
	}
	return err
}

func errNotProto(v any) error {
	return fmt.Errorf("%T is not a protobuf message", v)
}

// maxDepth bounds invalidUTF8's recursion as protobuf bounds its own.
const maxDepth = 100

var errMalformed = errors.New("malformed")

// invalidUTF8 returns the path, named as CheckStrings names them, of the
// first string field of the wire-format message b (of type md) that is not
// valid UTF-8. It reports false when there is none, or when b is
// malformed in a way protobuf's own error already describes.
func invalidUTF8(b []byte, md protoreflect.MessageDescriptor, prefix string, depth int) (string, bool) {
	if depth > maxDepth {
		return "", false
	}
	seen := map[protowire.Number]int{} // values of each repeated field so far
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", false
		}
		b = b[n:]
		fd := md.Fields().ByNumber(num)
		if fd == nil || typ != protowire.BytesType {
			if n = protowire.ConsumeFieldValue(num, typ, b); n < 0 {
				return "", false
			}
			b = b[n:]
			continue
		}
		v, n := protowire.ConsumeBytes(b)
		if n < 0 {
			return "", false
		}
		b = b[n:]
		path := fieldPath(prefix, fd)
		switch {
		case fd.IsMap():
			key, err := mapKey(v, fd.Message())
			if err != nil {
				return "", false
			}
			path = fmt.Sprintf("%s[%q]", path, key)
			if fd.MapKey().Kind() == protoreflect.StringKind && !utf8.ValidString(key) {
				return path, true
			}
			// The entry is a message of key and value: "value.title" in
			// it is "title" in the map's value.
			if p, found := invalidUTF8(v, fd.Message(), "", depth+1); found {
				return path + strings.TrimPrefix(p, "value"), true
			}
			continue
		case fd.IsList():
			path = fmt.Sprintf("%s[%d]", path, seen[num])
			seen[num]++
		}
		switch fd.Kind() {
		case protoreflect.StringKind:
			if !utf8.Valid(v) {
				return path, true
			}
		case protoreflect.MessageKind:
			if p, found := invalidUTF8(v, fd.Message(), path, depth+1); found {
				return p, true
			}
		}
	}
	return "", false
}

// mapKey returns the key of the wire-format map entry b, formatted as
// protoreflect.MapKey.String formats it (a string key as it is, valid
// UTF-8 or not).
func mapKey(b []byte, entry protoreflect.MessageDescriptor) (string, error) {
	keyField := entry.Fields().ByNumber(1)
	var key []byte // the entry with its key only
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return "", errMalformed
		}
		m := protowire.ConsumeFieldValue(num, typ, b[n:])
		if m < 0 {
			return "", errMalformed
		}
		if num == keyField.Number() {
			if keyField.Kind() == protoreflect.StringKind {
				v, _ := protowire.ConsumeBytes(b[n:])
				return string(v), nil
			}
			key = append(key, b[:n+m]...)
		}
		b = b[n+m:]
	}
	if keyField.Kind() == protoreflect.StringKind {
		return "", nil
	}
	m := dynamicpb.NewMessage(entry)
	if err := proto.Unmarshal(key, m); err != nil {
		return "", err
	}
	return m.Get(keyField).MapKey().String(), nil
}

// JSONCodec is connect-go's protobuf JSON codec with errors a client
// developer can act on and that show nothing of the server: connect's says
// "unmarshal into *parleyv1.CreateConversationRequest: proto: ...", naming
// a Go type; this one says "invalid JSON: (line 1:10): invalid value for
// string field title: 42". Like connect's, it ignores unknown fields, so an
// older server accepts a newer client's requests. Install it with
// connect.WithCodec for both of the names connect registers for JSON
// (NewJSONCodecs).
type JSONCodec struct{ name string }

// NewJSONCodecs returns the codec under "json" and "json; charset=utf-8",
// the two names connect-go serves JSON under.
func NewJSONCodecs() []JSONCodec {
	return []JSONCodec{{name: "json"}, {name: "json; charset=utf-8"}}
}

// Name implements connect.Codec.
func (c JSONCodec) Name() string { return c.name }

// Marshal implements connect.Codec.
func (JSONCodec) Marshal(v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, errNotProto(v)
	}
	return protojson.MarshalOptions{}.Marshal(m)
}

// MarshalAppend appends v's encoding to dst.
func (JSONCodec) MarshalAppend(dst []byte, v any) ([]byte, error) {
	m, ok := v.(proto.Message)
	if !ok {
		return nil, errNotProto(v)
	}
	return protojson.MarshalOptions{}.MarshalAppend(dst, m)
}

// MarshalStable is compact JSON, the same for the same message, which
// connect needs for requests sent as HTTP GET.
func (c JSONCodec) MarshalStable(v any) ([]byte, error) {
	out, err := c.Marshal(v)
	if err != nil {
		return nil, err
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, out); err != nil {
		return nil, err
	}
	return compact.Bytes(), nil
}

// IsBinary tells connect the encoding is text.
func (JSONCodec) IsBinary() bool { return false }

// Unmarshal implements connect.Codec.
func (JSONCodec) Unmarshal(data []byte, v any) error {
	m, ok := v.(proto.Message)
	if !ok {
		return errNotProto(v)
	}
	if len(data) == 0 {
		return errors.New("the request body is empty; send a JSON object ({} for no fields)")
	}
	if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(data, m); err != nil {
		// protobuf writes "proto:" and then a space or, at random, a
		// no-break space, so that nobody parses its messages.
		msg := strings.TrimLeft(strings.TrimPrefix(err.Error(), "proto:"), " \u00a0")
		return errors.New("invalid JSON: " + msg)
	}
	return nil
}
