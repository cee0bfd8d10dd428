package user_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/clock"
	"github.com/parleyhq/parley/internal/plan"
	"github.com/parleyhq/parley/internal/user"
)

// memStore is an in-memory user.Store.
type memStore struct {
	profiles map[uuid.UUID]user.Profile
	doc      []byte
	usage    user.MonthUsage
	// asked is the month MonthUsage was last asked for.
	asked [2]time.Time
}

func (m *memStore) UpsertProfile(_ context.Context, id user.Identity, p user.Patch) (user.Profile, error) {
	prof := m.profiles[id.UserID]
	prof.Identity = id
	for _, f := range []struct{ dst, src *string }{
		{&prof.DisplayName, p.DisplayName}, {&prof.DefaultModel, p.DefaultModel}, {&prof.DefaultSystemPrompt, p.DefaultSystemPrompt},
	} {
		if f.src != nil {
			*f.dst = *f.src
		}
	}
	m.profiles[id.UserID] = prof
	return prof, nil
}

func (m *memStore) MonthUsage(_ context.Context, _ uuid.UUID, start, end time.Time) (user.MonthUsage, error) {
	m.asked = [2]time.Time{start, end}
	return m.usage, nil
}

func (m *memStore) DeleteUser(_ context.Context, userID uuid.UUID) (user.Deleted, error) {
	delete(m.profiles, userID)
	return user.Deleted{}, nil
}

func (m *memStore) ExportUser(context.Context, uuid.UUID) ([]byte, error) { return m.doc, nil }

func ptr(s string) *string { return &s }

// TestUpdate checks the preferences' rules without a database.
func TestUpdate(t *testing.T) {
	t.Parallel()
	plans := plan.Catalog{Free: plan.Plan{Name: plan.Free, Models: []string{"small"}}}
	offered := func(m string) bool { return m == "small" || m == "large" }
	tests := []struct {
		name  string
		patch user.Patch
		code  apperr.Code
	}{
		{"OK", user.Patch{DisplayName: ptr("Ada"), DefaultModel: ptr("small"), DefaultSystemPrompt: ptr("hi")}, ""},
		{"OKServerDefault", user.Patch{DefaultModel: ptr("")}, ""},
		{"OKLongestName", user.Patch{DisplayName: ptr(strings.Repeat("é", user.MaxDisplayNameRunes))}, ""},
		{"ErrNameTooLong", user.Patch{DisplayName: ptr(strings.Repeat("é", user.MaxDisplayNameRunes+1))}, apperr.Invalid},
		{"ErrNotUTF8", user.Patch{DisplayName: ptr("\xff")}, apperr.Invalid},
		{"ErrNUL", user.Patch{DefaultSystemPrompt: ptr("a\x00b")}, apperr.Invalid},
		{"ErrPromptTooLong", user.Patch{DefaultSystemPrompt: ptr(strings.Repeat("a", user.MaxSystemPromptRunes+1))}, apperr.Invalid},
		{"ErrNotOffered", user.Patch{DefaultModel: ptr("huge")}, apperr.Invalid},
		{"ErrNotInPlan", user.Patch{DefaultModel: ptr("large")}, apperr.PermissionDenied},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			st := &memStore{profiles: map[uuid.UUID]user.Profile{}}
			svc := user.NewService(st, plans, offered, nil, nil)
			_, err := svc.Update(t.Context(), user.Identity{UserID: uuid.New()}, tt.patch)
			if got := apperr.CodeOf(err); got != tt.code {
				t.Errorf("code = %q, want %q (err %v)", got, tt.code, err)
			}
			if tt.code != "" && len(st.profiles) != 0 {
				t.Errorf("a refused update saved %v", st.profiles)
			}
		})
	}
}

// TestUsage: the month is the clock's in UTC, and titles are what the
// answers and runs do not explain.
func TestUsage(t *testing.T) {
	t.Parallel()
	st := &memStore{usage: user.MonthUsage{UsedTokens: 100, AnswerTokens: 60, AgentTokens: 30, ReservedTokens: 5, ActiveAnswers: 1}}
	// 23:30 on 31 January in New York is 1 February UTC.
	clk := clock.NewFake(time.Date(2026, 1, 31, 23, 30, 0, 0, time.FixedZone("EST", -5*3600)))
	svc := user.NewService(st, plan.Catalog{Free: plan.Plan{Name: plan.Free, MonthlyTokens: 1000}}, nil, clk, nil)
	got, err := svc.Usage(t.Context(), uuid.New())
	if err != nil {
		t.Fatal(err)
	}
	start, end := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	want := user.Usage{MonthUsage: st.usage, PeriodStart: start, ResetTime: end, QuotaTokens: 1000, TitleTokens: 10}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Usage (-want +got):\n%s", diff)
	}
	if st.asked != [2]time.Time{start, end} {
		t.Errorf("asked the store for %v", st.asked)
	}
	// Answers of deleted conversations are counted by neither kind; the
	// rest is never negative.
	st.usage = user.MonthUsage{UsedTokens: 10, AnswerTokens: 20}
	if got, err := svc.Usage(t.Context(), uuid.New()); err != nil || got.TitleTokens != 0 {
		t.Errorf("TitleTokens = %d (%v), want 0", got.TitleTokens, err)
	}
}

// TestExport: chunks of ExportChunkBytes concatenate to the document, a
// resume from any offset with the digest sends the rest, and a resume
// after the data changed is refused.
func TestExport(t *testing.T) {
	t.Parallel()
	st := &memStore{doc: []byte(strings.Repeat("0123456789", 15_000))} // 150,000 bytes: three chunks
	svc := user.NewService(st, plan.Catalog{}, nil, nil, nil)
	export := func(offset int64, digest string) ([]user.Chunk, error) {
		var chunks []user.Chunk
		err := svc.Export(t.Context(), uuid.New(), offset, digest, func(c user.Chunk) error {
			chunks = append(chunks, user.Chunk{Offset: c.Offset, Data: append([]byte(nil), c.Data...), TotalBytes: c.TotalBytes, Digest: c.Digest})
			return nil
		})
		return chunks, err
	}
	chunks, err := export(0, "")
	if err != nil {
		t.Fatal(err)
	}
	var doc []byte
	for _, c := range chunks {
		if c.Offset != int64(len(doc)) || c.TotalBytes != 150_000 || c.Digest != chunks[0].Digest || len(c.Data) > user.ExportChunkBytes {
			t.Fatalf("chunk at %d: offset %d, total %d, %d bytes", len(doc), c.Offset, c.TotalBytes, len(c.Data))
		}
		doc = append(doc, c.Data...)
	}
	if len(chunks) != 3 || string(doc) != string(st.doc) {
		t.Fatalf("%d chunks assembled %d bytes, want 3 making the document", len(chunks), len(doc))
	}
	rest, err := export(100_001, chunks[0].Digest)
	if err != nil || len(rest) != 1 || string(rest[0].Data) != string(st.doc[100_001:]) {
		t.Errorf("resumed at 100001: %d chunks, %v", len(rest), err)
	}
	st.doc = append(st.doc, '!')
	if _, err := export(100_001, chunks[0].Digest); apperr.CodeOf(err) != apperr.Aborted {
		t.Errorf("resume after a change: %v, want aborted", err)
	}
	if _, err := export(1<<30, ""); apperr.CodeOf(err) != apperr.Invalid {
		t.Errorf("offset past the end: %v, want invalid", err)
	}
}
