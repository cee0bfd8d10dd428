package rpc

import (
	"bytes"
	"errors"
	"testing"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/parleyhq/parley/internal/apperr"
)

// wantInvalid fails unless err is apperr Invalid for field with a message
// containing msgPart.
func wantInvalid(tb testing.TB, err error, field, msgPart string) {
	tb.Helper()
	var ae *apperr.Error
	if !errors.As(err, &ae) || ae.Code != apperr.Invalid || ae.Field != field || !bytes.Contains([]byte(ae.Message), []byte(msgPart)) {
		tb.Fatalf("err = %v, want apperr Invalid for %s (%q)", err, field, msgPart)
	}
}

// Struct has every shape a request could take: a map, nested messages and
// repeated ones.
func TestCheckStrings(t *testing.T) {
	t.Parallel()
	list := func(vs ...*structpb.Value) *structpb.Value {
		return structpb.NewListValue(&structpb.ListValue{Values: vs})
	}
	tests := []struct {
		name    string
		msg     *structpb.Struct
		field   string // "" when valid
		message string
	}{
		{"OK", &structpb.Struct{Fields: map[string]*structpb.Value{"a": structpb.NewStringValue("fine ✓"), "b": list(structpb.NewStringValue("x"))}}, "", ""},
		{"ErrNULInMapValue", &structpb.Struct{Fields: map[string]*structpb.Value{"a": structpb.NewStringValue("x\x00y")}},
			`fields["a"].string_value`, "NUL"},
		{"ErrNULInMapKey", &structpb.Struct{Fields: map[string]*structpb.Value{"k\x00": structpb.NewStringValue("ok")}},
			`fields["k\x00"]`, "NUL"},
		{"ErrNULInRepeated", &structpb.Struct{Fields: map[string]*structpb.Value{"l": list(structpb.NewStringValue("ok"), structpb.NewStringValue("b\x00"))}},
			`fields["l"].list_value.values[1].string_value`, "NUL"},
		{"ErrInvalidUTF8", &structpb.Struct{Fields: map[string]*structpb.Value{"a": structpb.NewStringValue("\xff")}},
			`fields["a"].string_value`, "UTF-8"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := CheckStrings(tt.msg)
			if tt.field == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			wantInvalid(t, err, tt.field, tt.message)
		})
	}
}

// TestBinaryCodecNamesInvalidUTF8: where protobuf says only "string field
// contains invalid UTF-8", the codec names the field as CheckStrings does.
func TestBinaryCodecNamesInvalidUTF8(t *testing.T) {
	t.Parallel()
	const marker = "zz\x01zz"
	list := func(vs ...*structpb.Value) *structpb.Value {
		return structpb.NewListValue(&structpb.ListValue{Values: vs})
	}
	tests := []struct {
		name  string
		msg   *structpb.Struct
		field string
	}{
		{"MapValue", &structpb.Struct{Fields: map[string]*structpb.Value{"a": structpb.NewStringValue(marker)}}, `fields["a"].string_value`},
		{"MapKey", &structpb.Struct{Fields: map[string]*structpb.Value{marker: structpb.NewStringValue("ok")}}, `fields["zz\xffzz"]`},
		{"Repeated", &structpb.Struct{Fields: map[string]*structpb.Value{"l": list(structpb.NewStringValue("ok"), structpb.NewStringValue(marker))}},
			`fields["l"].list_value.values[1].string_value`},
		{"Nested", &structpb.Struct{Fields: map[string]*structpb.Value{"s": structpb.NewStructValue(&structpb.Struct{Fields: map[string]*structpb.Value{"t": structpb.NewStringValue(marker)}})}},
			`fields["s"].struct_value.fields["t"].string_value`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			wire, err := proto.Marshal(tt.msg)
			if err != nil {
				t.Fatal(err)
			}
			wire = bytes.Replace(wire, []byte(marker), []byte("zz\xffzz"), 1)
			err = BinaryCodec{}.Unmarshal(wire, &structpb.Struct{})
			wantInvalid(t, err, tt.field, "UTF-8")
			// The same message, whole, parses.
			if err := (BinaryCodec{}).Unmarshal(bytes.Replace(wire, []byte("zz\xffzz"), []byte(marker), 1), &structpb.Struct{}); err != nil {
				t.Errorf("valid message: %v", err)
			}
		})
	}
}
