package rpc_test

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/parleyhq/parley/internal/apperr"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/rpc"
)

// requestTypes lists the request message type of every parley.v1 method
// once, from the descriptors, so a new RPC is fuzzed without anyone adding
// it.
func requestTypes(tb testing.TB) []protoreflect.MessageType {
	tb.Helper()
	seen := map[protoreflect.FullName]bool{}
	var out []protoreflect.MessageType
	for _, m := range requestMethods(tb) {
		name := m.Input().FullName()
		if seen[name] {
			continue
		}
		seen[name] = true
		mt, err := protoregistry.GlobalTypes.FindMessageByName(name)
		if err != nil {
			tb.Fatal(err)
		}
		out = append(out, mt)
	}
	// No request has maps or deep nesting yet; Struct has every shape one
	// could take, so the walkers are fuzzed on those too.
	return append(out, (&structpb.Struct{}).ProtoReflect().Type())
}

// badString is what CheckStrings must refuse: a string PostgreSQL's text
// cannot store.
func badString(s string) bool { return strings.IndexByte(s, 0) >= 0 || !utf8.ValidString(s) }

// anyBadString walks m as CheckStrings should, independently of it: every
// string, map key, list element and nested message.
func anyBadString(m protoreflect.Message) bool {
	bad := false
	m.Range(func(fd protoreflect.FieldDescriptor, v protoreflect.Value) bool {
		value := func(v protoreflect.Value, fd protoreflect.FieldDescriptor) {
			switch fd.Kind() {
			case protoreflect.StringKind:
				bad = bad || badString(v.String())
			case protoreflect.MessageKind, protoreflect.GroupKind:
				bad = bad || anyBadString(v.Message())
			}
		}
		switch {
		case fd.IsList():
			for i := range v.List().Len() {
				value(v.List().Get(i), fd)
			}
		case fd.IsMap():
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				if fd.MapKey().Kind() == protoreflect.StringKind {
					bad = bad || badString(k.String())
				}
				value(mv, fd.MapValue())
				return true
			})
		default:
			value(v, fd)
		}
		return !bad
	})
	return bad
}

// resolvePath finds the string a CheckStrings path names in m: a field's
// value, a list element, or a map entry's key or string value. It reports
// false when the path is malformed or names nothing in m.
func resolvePath(m protoreflect.Message, path string) (candidates []string, ok bool) {
	var fd protoreflect.FieldDescriptor
	var v protoreflect.Value
	for path != "" {
		if fd != nil {
			// Step into the message the previous segment named.
			if !strings.HasPrefix(path, ".") || fd.Kind() != protoreflect.MessageKind || fd.IsMap() || fd.IsList() {
				return nil, false
			}
			m, path = v.Message(), path[1:]
		}
		end := strings.IndexAny(path, ".[")
		if end < 0 {
			end = len(path)
		}
		fd = m.Descriptor().Fields().ByName(protoreflect.Name(path[:end]))
		if fd == nil || !m.Has(fd) {
			return nil, false
		}
		v, path = m.Get(fd), path[end:]
		if !strings.HasPrefix(path, "[") {
			continue
		}
		switch {
		case fd.IsList():
			end := strings.IndexByte(path, ']')
			i, err := strconv.Atoi(path[1:max(end, 1)])
			if end < 0 || err != nil || i < 0 || i >= v.List().Len() {
				return nil, false
			}
			v, path = v.List().Get(i), path[end+1:]
			if fd.Kind() == protoreflect.StringKind && path == "" {
				return []string{v.String()}, true
			}
			// A list of messages: the next segment steps into element i.
			if fd.Kind() != protoreflect.MessageKind || !strings.HasPrefix(path, ".") {
				return nil, false
			}
			m, fd, path = v.Message(), nil, path[1:]
		case fd.IsMap():
			quoted, err := strconv.QuotedPrefix(path[1:])
			if err != nil || !strings.HasPrefix(path[1+len(quoted):], "]") {
				return nil, false
			}
			keyText, _ := strconv.Unquote(quoted)
			var found protoreflect.MapKey
			var entry protoreflect.Value
			v.Map().Range(func(k protoreflect.MapKey, mv protoreflect.Value) bool {
				if k.String() == keyText {
					found, entry = k, mv
				}
				return !found.IsValid()
			})
			if !found.IsValid() {
				return nil, false
			}
			path = path[1+len(quoted)+1:]
			if path == "" {
				// The entry: its key or its string value is at fault.
				out := []string{}
				if fd.MapKey().Kind() == protoreflect.StringKind {
					out = append(out, found.String())
				}
				if fd.MapValue().Kind() == protoreflect.StringKind {
					out = append(out, entry.String())
				}
				return out, true
			}
			if fd.MapValue().Kind() != protoreflect.MessageKind || !strings.HasPrefix(path, ".") {
				return nil, false
			}
			m, fd, path = entry.Message(), nil, path[1:]
		default:
			return nil, false
		}
	}
	if fd == nil || fd.Kind() != protoreflect.StringKind || fd.IsList() || fd.IsMap() {
		return nil, false
	}
	return []string{v.String()}, true
}

// poisonField sets the pick-th string field at m's top level (appending to
// a repeated one) to s, which protobuf's parsers would never produce when
// it is not valid UTF-8.
func poisonField(m protoreflect.Message, pick int, s string) {
	var strs []protoreflect.FieldDescriptor
	fields := m.Descriptor().Fields()
	for i := range fields.Len() {
		if fd := fields.Get(i); fd.Kind() == protoreflect.StringKind && !fd.IsMap() {
			strs = append(strs, fd)
		}
	}
	if len(strs) == 0 {
		return
	}
	fd := strs[pick%len(strs)]
	if fd.IsList() {
		m.Mutable(fd).List().Append(protoreflect.ValueOfString(s))
		return
	}
	m.Set(fd, protoreflect.ValueOfString(s))
}

// checkStringsAgrees fails unless CheckStrings refuses m exactly when it
// holds a bad string, with apperr Invalid naming a path that leads to one.
func checkStringsAgrees(t *testing.T, m proto.Message, how string) {
	t.Helper()
	err := rpc.CheckStrings(m)
	bad := anyBadString(m.ProtoReflect())
	if (err != nil) != bad {
		t.Fatalf("%s %s: CheckStrings = %v, but holds a bad string = %v", how, m.ProtoReflect().Descriptor().FullName(), err, bad)
	}
	if err == nil {
		return
	}
	var ae *apperr.Error
	if !errors.As(err, &ae) || ae.Code != apperr.Invalid || ae.Field == "" {
		t.Fatalf("%s: CheckStrings = %#v, want apperr Invalid with a field", how, err)
	}
	candidates, ok := resolvePath(m.ProtoReflect(), ae.Field)
	if !ok {
		t.Fatalf("%s %s: CheckStrings names %q, which is no field of the message", how, m.ProtoReflect().Descriptor().FullName(), ae.Field)
	}
	wantMsg := "must be valid UTF-8"
	if !slicesContainsFunc(candidates, badString) {
		t.Fatalf("%s: CheckStrings names %q, whose strings %q are fine", how, ae.Field, candidates)
	}
	if slicesContainsFunc(candidates, func(s string) bool { return strings.IndexByte(s, 0) >= 0 }) {
		wantMsg = "must not contain NUL characters (U+0000)"
	}
	if ae.Message != wantMsg && len(candidates) == 1 {
		t.Fatalf("%s: %q says %q, want %q", how, ae.Field, ae.Message, wantMsg)
	}
}

func slicesContainsFunc(ss []string, f func(string) bool) bool {
	for _, s := range ss {
		if f(s) {
			return true
		}
	}
	return false
}

// checkDescriptorPath fails unless path, as BinaryCodec names an invalid
// string on the wire, names a chain of fields of md that ends at a string
// (or a map with string keys).
func checkDescriptorPath(t *testing.T, md protoreflect.MessageDescriptor, path string) {
	t.Helper()
	rest := path
	for {
		end := strings.IndexAny(rest, ".[")
		if end < 0 {
			end = len(rest)
		}
		fd := md.Fields().ByName(protoreflect.Name(rest[:end]))
		if fd == nil {
			t.Fatalf("BinaryCodec names %q: no field %q in %s", path, rest[:end], md.FullName())
		}
		rest = rest[end:]
		if strings.HasPrefix(rest, "[") {
			switch {
			case fd.IsList():
				close := strings.IndexByte(rest, ']')
				if _, err := strconv.Atoi(rest[1:max(close, 1)]); close < 0 || err != nil {
					t.Fatalf("BinaryCodec names %q: bad index in %q", path, rest)
				}
				rest = rest[close+1:]
			case fd.IsMap():
				quoted, err := strconv.QuotedPrefix(rest[1:])
				if err != nil || !strings.HasPrefix(rest[1+len(quoted):], "]") {
					t.Fatalf("BinaryCodec names %q: bad key in %q", path, rest)
				}
				rest = rest[1+len(quoted)+1:]
				if rest == "" {
					return // the key, or the entry's string value
				}
				fd = fd.MapValue()
			default:
				t.Fatalf("BinaryCodec names %q: %s is neither a list nor a map", path, fd.Name())
			}
		}
		if rest == "" {
			if fd.Kind() != protoreflect.StringKind {
				t.Fatalf("BinaryCodec names %q, a %v field", path, fd.Kind())
			}
			return
		}
		if !strings.HasPrefix(rest, ".") || fd.Message() == nil {
			t.Fatalf("BinaryCodec names %q: cannot step into %s", path, fd.Name())
		}
		md, rest = fd.Message(), rest[1:]
	}
}

// FuzzRequestStrings: any bytes, read as every request type of every
// parley.v1 method in protobuf binary (through Parley's BinaryCodec) and
// in protojson, and any string put into one of its fields, never make
// CheckStrings or the codec panic; CheckStrings refuses exactly the
// messages holding a string with a NUL or invalid UTF-8, naming a field
// path that leads to that string; and where the codec names a field for
// invalid UTF-8, the path is one of the message's fields and protobuf
// refused the same bytes.
func FuzzRequestStrings(f *testing.F) {
	seeds := []proto.Message{
		&parleyv1.CreateConversationRequest{Title: "tea", SystemPrompt: "be brief"},
		&parleyv1.CreateConversationRequest{Title: "a\x00b"},
		&parleyv1.SendMessageRequest{ConversationId: "c", Content: "hello ✓", ClientMessageId: "m\x00"},
		&parleyv1.UpdateConversationRequest{},
	}
	for i, m := range seeds {
		b, err := proto.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b, uint8(i), "")
		j, err := protojson.Marshal(m)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(j, uint8(i), "zz\xffzz")
	}
	f.Add([]byte("\x0a\x03\xff\xfe\xfd"), uint8(0), "") // field 1, invalid UTF-8
	f.Add([]byte("\x0a\x02a\x00"), uint8(1), "ok")      // field 1 with a NUL
	f.Add([]byte(`{"title":"\u0000","fields":{"l":["x","\u0000"]}}`), uint8(2), "")
	f.Add([]byte(`{"fields":{"k\u0000":"v","s":{"t":"\u0000"}}}`), uint8(3), "\x00")
	f.Add([]byte("\x12\x04\x0a\x02\xc3\x28"), uint8(0), "") // a nested message's string, invalid
	types := requestTypes(f)
	jsonOpts := protojson.UnmarshalOptions{DiscardUnknown: true}
	f.Fuzz(func(t *testing.T, data []byte, pick uint8, poison string) {
		for _, mt := range types {
			m := mt.New().Interface()
			err := rpc.BinaryCodec{}.Unmarshal(data, m)
			plain := mt.New().Interface()
			protoErr := proto.Unmarshal(data, plain)
			if (err == nil) != (protoErr == nil) {
				t.Fatalf("%s: BinaryCodec says %v where protobuf says %v", mt.Descriptor().FullName(), err, protoErr)
			}
			var ae *apperr.Error
			switch {
			case err == nil:
				checkStringsAgrees(t, m, "binary")
				poisonField(m.ProtoReflect(), int(pick), poison)
				checkStringsAgrees(t, m, "binary, poisoned")
			case errors.As(err, &ae):
				if ae.Code != apperr.Invalid || ae.Message != "must be valid UTF-8" || !strings.Contains(protoErr.Error(), "UTF-8") {
					t.Fatalf("BinaryCodec = %v for protobuf's %v", err, protoErr)
				}
				checkDescriptorPath(t, mt.Descriptor(), ae.Field)
			}

			m = mt.New().Interface()
			if jsonOpts.Unmarshal(data, m) == nil {
				checkStringsAgrees(t, m, "json")
				poisonField(m.ProtoReflect(), int(pick), poison)
				checkStringsAgrees(t, m, "json, poisoned")
			}
		}
	})
}
