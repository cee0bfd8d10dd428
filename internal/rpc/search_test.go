package rpc_test

import (
	"strings"
	"testing"

	"connectrpc.com/connect"
	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/apitest"
	parleyv1 "github.com/parleyhq/parley/internal/gen/parley/v1"
	"github.com/parleyhq/parley/internal/gen/parley/v1/parleyv1connect"
	"github.com/parleyhq/parley/internal/search"
)

// corpus is one user's seeded messages and artifacts, by name.
type corpus struct {
	user     uuid.UUID
	convID   string // "Trip planning"
	otherID  string // "Recipes"
	messages map[string]string
	artifact map[string]string
}

// seedCorpus gives a new user two conversations of messages and three
// artifacts whose words are chosen so that the ranking is known.
func seedCorpus(t *testing.T, env *apitest.Env, protocol string) corpus {
	t.Helper()
	c := corpus{user: uuid.New(), messages: map[string]string{}, artifact: map[string]string{}}
	chatClient := env.ChatClient(t, protocol, c.user)
	trip := create(t, chatClient, "Trip planning")
	recipes := create(t, chatClient, "Recipes")
	c.convID, c.otherID = trip.Id, recipes.Id
	for name, m := range map[string]struct{ conv, content string }{
		"lisbon3": {trip.Id, "Lisbon, Lisbon, Lisbon: trams in Lisbon are yellow and the hills are steep"},
		"lisbon1": {trip.Id, "We could also stop in Lisbon for a day on the way back from the coast"},
		"porto":   {trip.Id, "Porto has the best bridges and the river is lovely in May"},
		"html":    {trip.Id, "Is <script>alert(1)</script> & Lisbon safe?"},
		"soup":    {recipes.Id, "A soup of tomatoes with bread, garlic and olive oil"},
	} {
		c.messages[name] = seedMessage(t, env, c.user, m.conv, m.content).ID.String()
	}
	artifacts := env.ArtifactClient(t, protocol, c.user)
	for name, req := range map[string]*parleyv1.CreateArtifactRequest{
		"guide": {Title: "Lisbon guide", Kind: parleyv1.ArtifactKind_ARTIFACT_KIND_TEXT, Content: "Day one: Alfama. Day two: Belém.", ConversationId: trip.Id},
		"sheet": {Title: "Budget", Kind: parleyv1.ArtifactKind_ARTIFACT_KIND_SHEET, Content: "item,cost\nhotel in lisbon,400\nflights,250\n"},
		"code":  {Title: "soup.py", Kind: parleyv1.ArtifactKind_ARTIFACT_KIND_CODE, Language: "python", Content: "print('tomatoes')", ConversationId: recipes.Id},
	} {
		a, _ := createArtifact(t, artifacts, req)
		c.artifact[name] = a.Id
	}
	return c
}

// resultIDs names each result by its message or artifact id.
func resultIDs(results []*parleyv1.SearchResult) []string {
	var out []string
	for _, r := range results {
		out = append(out, r.MessageId+r.ArtifactId)
	}
	return out
}

func searchAll(t *testing.T, c parleyv1connect.SearchServiceClient, req *parleyv1.SearchRequest) []*parleyv1.SearchResult {
	t.Helper()
	var out []*parleyv1.SearchResult
	for page := 0; ; page++ {
		if page > 20 {
			t.Fatal("pagination does not end")
		}
		res, err := c.Search(testCtx(t), connect.NewRequest(req))
		if err != nil {
			t.Fatal(err)
		}
		if req.PageSize > 0 && len(res.Msg.Results) > int(req.PageSize) {
			t.Fatalf("page of %d, want at most %d", len(res.Msg.Results), req.PageSize)
		}
		out = append(out, res.Msg.Results...)
		if req.PageToken = res.Msg.NextPageToken; req.PageToken == "" {
			return out
		}
	}
}

// TestSearchRanking: on a seeded corpus, over every protocol, results come
// best first (a title match, then more occurrences), with highlighted,
// HTML-escaped snippets and the right ids, titles and kinds; filters by
// kind and conversation narrow them; pages cover them once.
func TestSearchRanking(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			c := seedCorpus(t, env, protocol)
			s := env.SearchClient(t, protocol, c.user)
			res, err := s.Search(testCtx(t), connect.NewRequest(&parleyv1.SearchRequest{Query: "lisbon"}))
			if err != nil {
				t.Fatal(err)
			}
			got := res.Msg.Results
			// The guide has the word in its title (weight A; its snippet is
			// of its content, which does not have it); the message
			// saying it four times beats those saying it once.
			if len(got) != 5 {
				t.Fatalf("%d results for lisbon, want 5: %v", len(got), got)
			}
			if got[0].ArtifactId != c.artifact["guide"] || got[1].MessageId != c.messages["lisbon3"] {
				t.Errorf("order %v: want the guide, then the message with lisbon four times", resultIDs(got))
			}
			for i := 1; i < len(got); i++ {
				if got[i].Rank > got[i-1].Rank {
					t.Errorf("result %d ranks %g above result %d's %g", i, got[i].Rank, i-1, got[i-1].Rank)
				}
			}
			var rest []string
			for _, r := range got[2:] {
				rest = append(rest, r.MessageId+r.ArtifactId)
			}
			want := []string{c.messages["lisbon1"], c.messages["html"], c.artifact["sheet"]}
			if diff := cmp.Diff(want, rest, sortStrings); diff != "" {
				t.Errorf("the other matches (-want +got):\n%s", diff)
			}
			byID := map[string]*parleyv1.SearchResult{}
			for _, r := range got {
				byID[r.MessageId+r.ArtifactId] = r
			}
			guide := byID[c.artifact["guide"]]
			if guide.Kind != parleyv1.SearchResultKind_SEARCH_RESULT_KIND_ARTIFACT || guide.Title != "Lisbon guide" || guide.ConversationId != c.convID ||
				guide.MessageId != "" || guide.Time == nil || guide.Snippet != "Day one: Alfama. Day two: Belém." {
				t.Errorf("guide result = %v", guide)
			}
			three := byID[c.messages["lisbon3"]]
			if three.Kind != parleyv1.SearchResultKind_SEARCH_RESULT_KIND_MESSAGE || three.Title != "Trip planning" || three.ConversationId != c.convID ||
				three.ArtifactId != "" || strings.Count(three.Snippet, "<mark>Lisbon</mark>") != 4 {
				t.Errorf("message result = %v", three)
			}
			// The snippet is HTML: the text is escaped, only marks are tags.
			if html := byID[c.messages["html"]].Snippet; !strings.Contains(html, "alert(1)&lt;/script&gt; &amp; <mark>Lisbon</mark> safe") || strings.Contains(html, "<script") {
				t.Errorf("snippet %q is not escaped HTML with the match marked", html)
			}
			// The sheet has no conversation.
			if sheet := byID[c.artifact["sheet"]]; sheet.ConversationId != "" || sheet.Title != "Budget" {
				t.Errorf("sheet result = %v", sheet)
			}

			// Web search syntax: a phrase, or, and -exclusion.
			for _, tt := range []struct {
				query string
				want  []string
			}{
				{`"yellow and the hills"`, []string{c.messages["lisbon3"]}},
				{`porto or tomatoes`, []string{c.messages["porto"], c.messages["soup"], c.artifact["code"]}},
				{`lisbon -trams -coast -safe`, []string{c.artifact["guide"], c.artifact["sheet"]}},
				{`LISBON BRIDGES`, nil},
				{`porto bridges`, []string{c.messages["porto"]}},
			} {
				results := searchAll(t, s, &parleyv1.SearchRequest{Query: tt.query})
				if diff := cmp.Diff(tt.want, resultIDs(results), sortStrings); diff != "" {
					t.Errorf("%s (-want +got):\n%s", tt.query, diff)
				}
			}

			// Filters.
			for _, tt := range []struct {
				name string
				req  *parleyv1.SearchRequest
				want []string
			}{
				{"Messages", &parleyv1.SearchRequest{Query: "lisbon", Kinds: []parleyv1.SearchResultKind{parleyv1.SearchResultKind_SEARCH_RESULT_KIND_MESSAGE}},
					[]string{c.messages["lisbon3"], c.messages["lisbon1"], c.messages["html"]}},
				{"Artifacts", &parleyv1.SearchRequest{Query: "lisbon", Kinds: []parleyv1.SearchResultKind{parleyv1.SearchResultKind_SEARCH_RESULT_KIND_ARTIFACT}},
					[]string{c.artifact["guide"], c.artifact["sheet"]}},
				{"BothKinds", &parleyv1.SearchRequest{Query: "tomatoes", Kinds: []parleyv1.SearchResultKind{parleyv1.SearchResultKind_SEARCH_RESULT_KIND_ARTIFACT, parleyv1.SearchResultKind_SEARCH_RESULT_KIND_MESSAGE}},
					[]string{c.messages["soup"], c.artifact["code"]}},
				{"Conversation", &parleyv1.SearchRequest{Query: "tomatoes or lisbon", ConversationId: c.otherID},
					[]string{c.messages["soup"], c.artifact["code"]}},
				{"ConversationArtifacts", &parleyv1.SearchRequest{Query: "lisbon", ConversationId: c.convID, Kinds: []parleyv1.SearchResultKind{parleyv1.SearchResultKind_SEARCH_RESULT_KIND_ARTIFACT}},
					[]string{c.artifact["guide"]}},
			} {
				results := searchAll(t, s, tt.req)
				if diff := cmp.Diff(tt.want, resultIDs(results), sortStrings); diff != "" {
					t.Errorf("%s (-want +got):\n%s", tt.name, diff)
				}
			}

			// Pages of two cover the five results once, in the same order.
			paged := searchAll(t, s, &parleyv1.SearchRequest{Query: "lisbon", PageSize: 2})
			if diff := cmp.Diff(resultIDs(got), resultIDs(paged)); diff != "" {
				t.Errorf("pages of 2 (-one page +pages):\n%s", diff)
			}
		})
	}
}

// sortStrings compares id lists as sets, for results of equal rank.
var sortStrings = cmpopts.SortSlices(func(a, b string) bool { return a < b })

// TestSearchSkipsStreamingAnswers: an answer still being written is not
// searchable until it ends (the indexes leave it out, so checkpoints never
// rebuild a vector).
func TestSearchSkipsStreamingAnswers(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	user := uuid.New()
	conv := create(t, env.ChatClient(t, "connect+json", user), "live")
	seedMessage(t, env, user, conv.Id, "xylophone lessons")
	ctx := testCtx(t)
	if _, err := env.Store.Pool().Exec(ctx,
		`INSERT INTO parley.messages (conversation_id, user_id, role, content, status) VALUES ($1, $2, 'assistant', 'xylophone xylophone', 'streaming')`,
		conv.Id, user); err != nil {
		t.Fatal(err)
	}
	got := searchAll(t, env.SearchClient(t, "connect+json", user), &parleyv1.SearchRequest{Query: "xylophone"})
	if len(got) != 1 || !strings.Contains(got[0].Snippet, "lessons") {
		t.Errorf("results %v, want the finished message only", got)
	}
}

// TestSearchIsolation: a user never finds another user's messages or
// artifacts, even with the same words and the other's conversation id.
func TestSearchIsolation(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	for _, protocol := range apitest.Protocols {
		t.Run(protocol, func(t *testing.T) {
			t.Parallel()
			owner := seedCorpus(t, env, protocol)
			intruder := seedCorpus(t, env, protocol)
			s := env.SearchClient(t, protocol, intruder.user)
			owned := map[string]bool{}
			for _, id := range owner.messages {
				owned[id] = true
			}
			for _, id := range owner.artifact {
				owned[id] = true
			}
			for _, req := range []*parleyv1.SearchRequest{
				{Query: "lisbon"},
				{Query: "lisbon or tomatoes or porto"},
				{Query: "lisbon", ConversationId: owner.convID},
				{Query: "tomatoes", ConversationId: owner.otherID, Kinds: []parleyv1.SearchResultKind{parleyv1.SearchResultKind_SEARCH_RESULT_KIND_ARTIFACT}},
			} {
				results := searchAll(t, s, req)
				if req.ConversationId == "" && len(results) == 0 {
					t.Errorf("%q found none of the intruder's own results", req.Query)
				}
				for _, r := range results {
					if owned[r.MessageId+r.ArtifactId] || r.ConversationId == owner.convID || r.ConversationId == owner.otherID {
						t.Errorf("%q (conversation %q) returned the owner's %v", req.Query, req.ConversationId, r)
					}
				}
			}
		})
	}
}

// TestSearchQueries: the query is bounded; one with no searchable word
// answers an empty page; bad filters, page sizes and tokens name their
// field; the english configuration stems.
func TestSearchQueries(t *testing.T) {
	t.Parallel()
	env := apitest.New(t, apitest.Options{})
	c := seedCorpus(t, env, "grpc")
	s := env.SearchClient(t, "grpc", c.user)
	ctx := testCtx(t)
	t.Run("Bound", func(t *testing.T) {
		long := strings.Repeat("é", search.MaxQueryRunes-len("lisbon ")) // 256 characters, 505 bytes
		res, err := s.Search(ctx, connect.NewRequest(&parleyv1.SearchRequest{Query: "lisbon " + long}))
		if err != nil || len(res.Msg.Results) != 0 {
			t.Errorf("a %d-character query: %v (%v)", search.MaxQueryRunes, res, err)
		}
		_, err = s.Search(ctx, connect.NewRequest(&parleyv1.SearchRequest{Query: "lisbon " + long + "x"}))
		wantCode(t, err, connect.CodeInvalidArgument, "query: must be at most 256 characters, got 257")
	})
	t.Run("NothingToSearch", func(t *testing.T) {
		for _, q := range []string{"", "   ", "!!!", "-", `""`, "- & | !"} {
			res, err := s.Search(ctx, connect.NewRequest(&parleyv1.SearchRequest{Query: q}))
			if err != nil || len(res.Msg.Results) != 0 || res.Msg.NextPageToken != "" {
				t.Errorf("query %q: %v (%v), want an empty page", q, res, err)
			}
		}
	})
	t.Run("Invalid", func(t *testing.T) {
		page, err := s.Search(ctx, connect.NewRequest(&parleyv1.SearchRequest{Query: "lisbon", PageSize: 1}))
		if err != nil || page.Msg.NextPageToken == "" {
			t.Fatalf("first page: %v (%v)", page, err)
		}
		for _, tt := range []struct {
			name string
			req  *parleyv1.SearchRequest
			msg  string
		}{
			{"ErrPageSize", &parleyv1.SearchRequest{Query: "lisbon", PageSize: 51}, "page_size: must be between 1 and 50"},
			{"ErrKind", &parleyv1.SearchRequest{Query: "lisbon", Kinds: []parleyv1.SearchResultKind{5}}, "kinds: must list"},
			{"ErrConversationID", &parleyv1.SearchRequest{Query: "lisbon", ConversationId: "nope"}, "conversation_id: must be a UUID"},
			{"ErrTokenOfAnotherQuery", &parleyv1.SearchRequest{Query: "porto", PageToken: page.Msg.NextPageToken}, "page_token: is not a page token"},
			{"ErrTokenOfAnotherFilter", &parleyv1.SearchRequest{Query: "lisbon", ConversationId: c.convID, PageToken: page.Msg.NextPageToken}, "page_token"},
		} {
			t.Run(tt.name, func(t *testing.T) {
				_, err := s.Search(ctx, connect.NewRequest(tt.req))
				wantCode(t, err, connect.CodeInvalidArgument, tt.msg)
			})
		}
	})
	t.Run("English", func(t *testing.T) {
		english := apitest.New(t, apitest.Options{SearchTextConfig: "english"})
		user := uuid.New()
		conv := create(t, english.ChatClient(t, "connect+json", user), "english")
		seedMessage(t, english, user, conv.Id, "She was running to the bridges")
		es := english.SearchClient(t, "connect+json", user)
		for _, q := range []string{"runs bridge", "the RUN"} {
			got := searchAll(t, es, &parleyv1.SearchRequest{Query: q})
			if len(got) != 1 || !strings.Contains(got[0].Snippet, "<mark>running</mark>") {
				t.Errorf("english %q: %v, want the message, running marked", q, got)
			}
		}
		// Under simple the same words do not match: no stemming.
		simple := searchAll(t, s, &parleyv1.SearchRequest{Query: "bridge"})
		if len(simple) != 0 {
			t.Errorf("simple found %v for bridge", simple)
		}
		// Only stop words: nothing to search, an empty page.
		if got := searchAll(t, es, &parleyv1.SearchRequest{Query: "the"}); len(got) != 0 {
			t.Errorf("english, only stop words: %v", got)
		}
	})
}
