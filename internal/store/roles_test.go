package store_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/parleyhq/parley/db"
	"github.com/parleyhq/parley/internal/agent"
	"github.com/parleyhq/parley/internal/artifact"
	"github.com/parleyhq/parley/internal/attachment"
	"github.com/parleyhq/parley/internal/billing"
	"github.com/parleyhq/parley/internal/chat"
	"github.com/parleyhq/parley/internal/pgtest"
	"github.com/parleyhq/parley/internal/search"
	"github.com/parleyhq/parley/internal/share"
	"github.com/parleyhq/parley/internal/store"
	"github.com/parleyhq/parley/internal/user"
)

// supabaseRoles are created as Supabase creates them: anon and
// authenticated are the roles its Data API (PostgREST) switches to for a
// caller with the public anon key or a user's token; service_role bypasses
// row level security.
var supabaseRoles = []struct{ name, attributes string }{
	{"anon", "NOLOGIN NOINHERIT"},
	{"authenticated", "NOLOGIN NOINHERIT"},
	{"service_role", "NOLOGIN NOINHERIT BYPASSRLS"},
}

// exposeSchemaSQL is what Supabase's guide to custom schemas has an
// operator run to reach a schema through the Data API.
const exposeSchemaSQL = `
GRANT USAGE ON SCHEMA parley TO anon, authenticated, service_role;
GRANT ALL ON ALL TABLES IN SCHEMA parley TO anon, authenticated, service_role;
GRANT ALL ON ALL ROUTINES IN SCHEMA parley TO anon, authenticated, service_role;
GRANT ALL ON ALL SEQUENCES IN SCHEMA parley TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA parley GRANT ALL ON TABLES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA parley GRANT ALL ON ROUTINES TO anon, authenticated, service_role;
ALTER DEFAULT PRIVILEGES IN SCHEMA parley GRANT ALL ON SEQUENCES TO anon, authenticated, service_role;`

// createSupabaseRoles creates Supabase's roles unless they exist. Roles
// belong to the whole server, so other tests (and other packages) may be
// creating them at the same moment.
func createSupabaseRoles(tb testing.TB) {
	tb.Helper()
	pool := openPool(tb, pgtest.URL(tb), "")
	for _, r := range supabaseRoles {
		sql := `DO $$ BEGIN CREATE ROLE ` + pgx.Identifier{r.name}.Sanitize() + ` ` + r.attributes + `;
			EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$`
		if _, err := pool.Exec(tb.Context(), sql); err != nil {
			tb.Fatalf("create role %s: %v", r.name, err)
		}
	}
}

// openPool opens a pool on dbURL, closed when the test ends. A non-empty
// role is set on every connection, so its statements run with that role's
// privileges and row level security.
func openPool(tb testing.TB, dbURL, role string) *pgxpool.Pool {
	tb.Helper()
	cfg, err := pgxpool.ParseConfig(dbURL)
	if err != nil {
		tb.Fatal(err)
	}
	cfg.AfterConnect = store.PrepareConn
	if role != "" {
		cfg.AfterConnect = func(ctx context.Context, c *pgx.Conn) error {
			if err := store.PrepareConn(ctx, c); err != nil {
				return err
			}
			_, err := c.Exec(ctx, "SET ROLE "+pgx.Identifier{role}.Sanitize())
			return err
		}
	}
	pool, err := pgxpool.NewWithConfig(tb.Context(), cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pool.Close)
	return pool
}

// seed writes a row into every table, as the service does, for a new
// user, whose id it returns.
func seed(tb testing.TB, st *store.Store) uuid.UUID {
	tb.Helper()
	ctx := tb.Context()
	userID := uuid.New()
	conv, err := st.CreateConversation(ctx, userID, chat.NewConversation{Title: "secret"})
	if err != nil {
		tb.Fatal(err)
	}
	// The user message carries an attachment (parley.attachments).
	userMessageID := uuid.New()
	_, answer, err := st.InsertExchange(ctx, userID, chat.NewExchange{
		ConversationID: conv.ID, UserMessageID: userMessageID, Content: "my secret", AssistantMessageID: uuid.New(),
		GenerationID: uuid.New(), Model: "m", CreateTime: time.Now(), ReserveTokens: 10, QuotaTokens: 1000, MaxActive: 3,
		Attachments: []attachment.Attachment{{
			ID: uuid.New(), MessageID: userMessageID, ConversationID: conv.ID, Name: "secret.txt", ContentType: "text/plain; charset=utf-8",
			Kind: attachment.KindText, SizeBytes: 6, SHA256: "00", CreateTime: time.Now(), Content: []byte("secret"),
		}},
	})
	if err != nil {
		tb.Fatal(err)
	}
	// The answer's end indexes the exchange for search (message_search).
	if _, err := st.FinishMessage(ctx, answer.ID, chat.Outcome{Content: "kept secret", Status: chat.StatusCompleted, Model: "m"}); err != nil {
		tb.Fatal(err)
	}
	if _, err := st.SaveRating(ctx, userID, answer.ID, chat.Rating{Value: chat.RatingDown, Text: "secret feedback", Tags: []string{"t"}}); err != nil {
		tb.Fatal(err)
	}
	if _, err := st.InsertShare(ctx, userID, share.NewShare{
		ID: strings.Repeat("s", 32) + userID.String()[:11], ConversationID: conv.ID, Snapshot: share.Snapshot{Title: "secret"},
	}); err != nil {
		tb.Fatal(err)
	}
	if _, _, err := st.CreateArtifact(ctx, userID, artifact.NewArtifact{
		Title: "secret plan", Kind: artifact.KindText, Content: "my secret", ConversationID: conv.ID, Author: artifact.AuthorUser,
	}); err != nil {
		tb.Fatal(err)
	}
	// An agent run with its steps, its first task in the QStash outbox, a
	// started event, and a handled QStash message.
	agents := st.Agents(st.Outbox(unpublished{}, nil))
	runID := uuid.New()
	first := agent.Task{RunID: runID, Step: 0, Attempt: 1}
	if _, _, err := agents.CreateRun(ctx, agent.NewRun{ID: runID, UserID: userID, Goal: "secret goal", Model: "m", Tools: agent.AllTools}, 3, first); err != nil {
		tb.Fatal(err)
	}
	if _, err := agents.ClaimStep(ctx, first, uuid.New(), time.Minute, time.Now()); err != nil {
		tb.Fatal(err)
	}
	if err := st.QStashReplays().Done(ctx, "msg_secret", time.Now().Add(time.Hour)); err != nil {
		tb.Fatal(err)
	}
	name := "secret name"
	if _, err := st.UpsertProfile(ctx, user.Identity{UserID: userID, Email: "secret@example.com"}, user.Patch{DisplayName: &name}); err != nil {
		tb.Fatal(err)
	}
	// A subscription, and a handled Stripe event that made it pro.
	customer := "cus_" + userID.String()
	if _, err := st.SaveCustomer(ctx, userID, customer); err != nil {
		tb.Fatal(err)
	}
	if _, err := st.ApplyEvent(ctx, billing.EventRecord{ID: "evt_" + userID.String(), Type: "customer.subscription.created", Time: time.Now()},
		billing.Change{Set: &billing.SubscriptionUpdate{CustomerID: customer, SubscriptionID: "sub_" + userID.String(), Plan: "pro", Status: billing.StatusActive}}); err != nil {
		tb.Fatal(err)
	}
	return userID
}

// unpublished is a push queue that is down: the outbox keeps its rows.
type unpublished struct{}

func (unpublished) PublishTask(context.Context, agent.Task, time.Time) error {
	return errors.New("the queue is down")
}

// seedRiver writes a row into each of River's tables (the task queue's,
// created by migration 9), as River does; river_migration has its rows.
func seedRiver(tb testing.TB, owner *pgxpool.Pool) {
	tb.Helper()
	_, err := owner.Exec(tb.Context(), `
		INSERT INTO parley.river_job (args, kind) VALUES ('{"secret": true}', 'seed');
		INSERT INTO parley.river_leader (elected_at, expires_at, leader_id) VALUES (now(), now() + interval '1 minute', 'seed');
		INSERT INTO parley.river_queue (name) VALUES ('seed');
		INSERT INTO parley.river_notification (payload, topic) VALUES ('{}', 'seed')`)
	if err != nil {
		tb.Fatal(err)
	}
}

// relationsSQL lists the relations of the parley schema of the kinds $1
// names (pg_class.relkind).
const relationsSQL = `
SELECT c.oid::regclass::text FROM pg_class c
WHERE c.relnamespace = 'parley'::regnamespace AND c.relkind = ANY ($1::"char"[])
ORDER BY 1`

// Kinds of relations: everything a role could read, and the tables (row
// level security covers tables, not sequences).
var (
	readableKinds = []string{"r", "p", "v", "m", "f", "S"}
	tableKinds    = []string{"r", "p"}
)

// assertReadsNothing fails unless role reads no row of any relation of
// those kinds in the parley schema, either because it may not read it at
// all or because row level security hides every row, which the owner sees.
func assertReadsNothing(t *testing.T, owner *pgxpool.Pool, role string, kinds []string) {
	t.Helper()
	ctx := t.Context()
	rows, err := owner.Query(ctx, relationsSQL, kinds)
	if err != nil {
		t.Fatal(err)
	}
	relations, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if len(relations) == 0 {
		t.Fatal("no relation in the parley schema")
	}
	tx, err := owner.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, "SET LOCAL ROLE "+pgx.Identifier{role}.Sanitize()); err != nil {
		t.Fatal(err)
	}
	for _, rel := range relations {
		t.Run(rel, func(t *testing.T) {
			var ownerRows int
			if err := owner.QueryRow(ctx, "SELECT count(*) FROM "+rel).Scan(&ownerRows); err != nil {
				t.Fatal(err)
			}
			sp, err := tx.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer sp.Rollback(context.WithoutCancel(ctx))
			var n int
			err = sp.QueryRow(ctx, "SELECT count(*) FROM "+rel).Scan(&n)
			var pgErr *pgconn.PgError
			switch {
			case errors.As(err, &pgErr) && pgErr.Code == "42501": // insufficient_privilege
			case err != nil:
				t.Fatal(err)
			case n > 0:
				t.Errorf("%s reads %d rows of %s", role, n, rel)
			case ownerRows == 0:
				t.Errorf("%s reads no row of %s, but the owner reads none either: seed it so the test means something", role, rel)
			}
		})
	}
}

// TestSupabaseRolesReadNothing: on a database with Supabase's roles, anon
// and authenticated (what the Data API runs as for anyone with the public
// anon key or a user's token) can read nothing in Parley's schema: not when
// it is merely migrated, not when an operator exposed the schema before
// migrating (the migrations take the grants back), and not when they
// exposed it afterwards (row level security, on every table, hides every
// row from roles without a policy).
func TestSupabaseRolesReadNothing(t *testing.T) {
	t.Parallel()
	createSupabaseRoles(t)
	expose := func(t *testing.T, dbURL string) {
		t.Helper()
		if _, err := openPool(t, dbURL, "").Exec(t.Context(), exposeSchemaSQL); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		name  string
		setup func(t *testing.T, dbURL string)
		kinds []string
	}{
		{"Migrated", func(*testing.T, string) {}, readableKinds},
		{"SchemaExposedBeforeMigrating", func(t *testing.T, dbURL string) {
			m, err := db.NewMigrator(t.Context(), dbURL, nil)
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if err := m.DownTo(t.Context(), 0); err != nil {
				t.Fatalf("roll back: %v", err)
			}
			expose(t, dbURL)
			if _, err := m.Up(t.Context()); err != nil {
				t.Fatalf("migrate: %v", err)
			}
		}, readableKinds},
		// Grants made after the migrations stay; row level security still
		// hides every row of every table. (Sequences have none: the one
		// there, goose's id counter, would then show how many migrations
		// ran.)
		{"SchemaExposedAfterMigrating", expose, tableKinds},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dbURL := pgtest.NewDatabase(t)
			tt.setup(t, dbURL)
			owner := openPool(t, dbURL, "")
			seed(t, store.New(owner))
			seedRiver(t, owner)
			for _, role := range []string{"anon", "authenticated"} {
				t.Run(role, func(t *testing.T) { assertReadsNothing(t, owner, role, tt.kinds) })
			}
		})
	}
}

// tablePrivilegesSQL lists what a role may do to each table of the parley
// schema, directly, through PUBLIC or through the roles it belongs to.
const tablePrivilegesSQL = `
SELECT c.oid::regclass::text, array_agg(p.privilege ORDER BY p.n)
FROM pg_class c
CROSS JOIN unnest(array['SELECT', 'INSERT', 'UPDATE', 'DELETE', 'TRUNCATE', 'REFERENCES', 'TRIGGER']) WITH ORDINALITY p(privilege, n)
WHERE c.relnamespace = 'parley'::regnamespace AND c.relkind IN ('r', 'p', 'v', 'm', 'f')
  AND has_table_privilege($1, c.oid, p.privilege)
GROUP BY 1 ORDER BY 1`

// TestServiceRole: the migrations give db.ServiceRole exactly the
// privileges the service's queries use, and the service works as it.
func TestServiceRole(t *testing.T) {
	t.Parallel()
	dbURL := pgtest.NewDatabase(t)
	owner := openPool(t, dbURL, "")
	t.Run("Privileges", func(t *testing.T) {
		rows, err := owner.Query(t.Context(), tablePrivilegesSQL, db.ServiceRole)
		if err != nil {
			t.Fatal(err)
		}
		got := map[string][]string{}
		for rows.Next() {
			var table string
			var privileges []string
			if err := rows.Scan(&table, &privileges); err != nil {
				t.Fatal(err)
			}
			got[table] = privileges
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		// Deleting a conversation deletes its messages through ON DELETE
		// CASCADE, which runs as the table's owner: no DELETE on messages.
		// The goose version table is the migrations' business alone.
		// Versions go with their artifact (ON DELETE CASCADE) and lose
		// their links with their conversation (ON DELETE SET NULL), both
		// run as the owner: only SELECT and INSERT on artifact_versions.
		// River's client (internal/riverq, whose tests run as this role)
		// works its job, leader and queue tables; River's version table and
		// its SQLite-only outbox are not its business.
		want := map[string][]string{
			"parley.agent_events":      {"SELECT", "INSERT"},
			"parley.agent_outbox":      {"SELECT", "INSERT", "UPDATE", "DELETE"},
			"parley.agent_runs":        {"SELECT", "INSERT", "UPDATE", "DELETE"},
			"parley.agent_steps":       {"SELECT", "INSERT", "UPDATE"},
			"parley.artifact_versions": {"SELECT", "INSERT"},
			"parley.artifacts":         {"SELECT", "INSERT", "UPDATE", "DELETE"},
			"parley.attachments":       {"SELECT", "INSERT"},
			"parley.conversations":     {"SELECT", "INSERT", "UPDATE", "DELETE"},
			"parley.message_search":    {"SELECT"},
			"parley.messages":          {"SELECT", "INSERT", "UPDATE"},
			"parley.message_ratings":   {"SELECT", "INSERT", "UPDATE", "DELETE"},
			"parley.shares":            {"SELECT", "INSERT", "DELETE"},
			"parley.profiles":          {"SELECT", "INSERT", "UPDATE", "DELETE"},
			"parley.qstash_messages":   {"SELECT", "INSERT", "DELETE"},
			"parley.river_job":         {"SELECT", "INSERT", "UPDATE", "DELETE"},
			"parley.river_leader":      {"SELECT", "INSERT", "UPDATE", "DELETE"},
			"parley.river_queue":       {"SELECT", "INSERT", "UPDATE", "DELETE"},
			"parley.token_usage":       {"SELECT", "INSERT", "UPDATE", "DELETE"},
			"parley.stripe_events":     {"SELECT", "INSERT"},
			"parley.subscriptions":     {"SELECT", "INSERT", "UPDATE", "DELETE"},
		}
		if diff := cmp.Diff(want, got); diff != "" {
			t.Errorf("privileges of %s (-want +got):\n%s", db.ServiceRole, diff)
		}
		var usage, create, super, bypass bool
		err = owner.QueryRow(t.Context(), `
			SELECT has_schema_privilege(r.oid, 'parley', 'USAGE'), has_schema_privilege(r.oid, 'parley', 'CREATE'),
			       r.rolsuper, r.rolbypassrls
			FROM pg_roles r WHERE r.rolname = $1`, db.ServiceRole).Scan(&usage, &create, &super, &bypass)
		if err != nil {
			t.Fatal(err)
		}
		if !usage || create || super || bypass {
			t.Errorf("%s: schema usage %t (want true), create %t, superuser %t, bypassrls %t (want false)", db.ServiceRole, usage, create, super, bypass)
		}
	})
	t.Run("RunsTheService", func(t *testing.T) {
		assertServiceWorks(t, store.New(openPool(t, dbURL, db.ServiceRole)))
	})
}

// assertServiceWorks runs every store operation the service uses; each
// must succeed (or fail for its own reason, not for a missing privilege).
func assertServiceWorks(t *testing.T, st *store.Store) {
	t.Helper()
	ctx := t.Context()
	userID := uuid.New()
	must := func(step string, err error) {
		t.Helper()
		if err != nil {
			t.Fatalf("%s: %v", step, err)
		}
	}
	conv, err := st.CreateConversation(ctx, userID, chat.NewConversation{RequestID: "r1"})
	must("CreateConversation", err)
	again, err := st.CreateConversation(ctx, userID, chat.NewConversation{RequestID: "r1"})
	must("CreateConversation, retried", err)
	if again.ID != conv.ID {
		t.Fatalf("a retried create made conversation %s, want %s", again.ID, conv.ID)
	}
	_, err = st.GetConversation(ctx, userID, conv.ID)
	must("GetConversation", err)
	_, err = st.ListConversations(ctx, userID, nil, 10)
	must("ListConversations", err)
	model := "m"
	_, err = st.UpdateConversation(ctx, userID, conv.ID, chat.ConversationPatch{Model: &model})
	must("UpdateConversation", err)

	exchange := func(parent uuid.UUID, clientID string) chat.NewExchange {
		return chat.NewExchange{
			ConversationID: conv.ID, ParentID: parent, UserMessageID: uuid.New(), Content: "hello", ClientMessageID: clientID,
			AssistantMessageID: uuid.New(), GenerationID: uuid.New(), Model: model, CreateTime: time.Now(),
			ReserveTokens: 100, QuotaTokens: 10_000, MaxActive: 3,
		}
	}
	first := exchange(uuid.Nil, "c1")
	asked, answer, err := st.InsertExchange(ctx, userID, first)
	must("InsertExchange", err)
	if _, _, err := st.InsertExchange(ctx, userID, exchange(answer.ID, "c2")); !errors.Is(err, chat.ErrConversationBusy) {
		t.Fatalf("InsertExchange while an answer streams: %v, want ErrConversationBusy", err)
	}
	_, err = st.CheckpointMessages(ctx, []chat.Checkpoint{{MessageID: answer.ID, Content: "hi"}})
	must("CheckpointMessages", err)
	_, _, err = st.FindExchange(ctx, userID, conv.ID, "c1")
	must("FindExchange", err)
	_, err = st.GetMessage(ctx, userID, answer.ID)
	must("GetMessage", err)
	_, err = st.GetMessageByGeneration(ctx, userID, first.GenerationID)
	must("GetMessageByGeneration", err)
	_, err = st.LoadContext(ctx, userID, conv.ID, uuid.Nil, 1<<20)
	must("LoadContext", err)
	_, err = st.ListMessages(ctx, userID, conv.ID, uuid.Nil, nil, 10)
	must("ListMessages", err)
	_, err = st.FinishMessage(ctx, answer.ID, chat.Outcome{Content: "hi there", Status: chat.StatusCompleted, Model: model, Usage: chat.Usage{PromptTokens: 3, CompletionTokens: 2}})
	must("FinishMessage", err)
	_, err = st.TokenUsage(ctx, userID, time.Now())
	must("TokenUsage", err)
	must("SelectBranch", st.SelectBranch(ctx, userID, conv.ID, asked.ID))
	_, err = st.SaveTitle(ctx, userID, conv.ID, "title", time.Now(), 12)
	must("SaveTitle", err)
	_, err = st.InsertMessage(ctx, userID, chat.Message{ConversationID: conv.ID, ParentID: answer.ID, Role: chat.RoleUser, Content: "more", Status: chat.StatusCompleted})
	must("InsertMessage", err)
	_, _, err = st.InsertExchange(ctx, userID, exchange(answer.ID, "c3"))
	must("InsertExchange, second", err)
	_, err = st.InterruptStale(ctx, time.Now().Add(time.Hour))
	must("InterruptStale", err)
	_, err = st.SaveRating(ctx, userID, answer.ID, chat.Rating{Value: chat.RatingUp, Tags: []string{"clear"}})
	must("SaveRating", err)
	_, err = st.SaveRating(ctx, userID, answer.ID, chat.Rating{Value: chat.RatingDown, Text: "changed"})
	must("SaveRating, changed", err)
	_, err = st.ListMessages(ctx, userID, conv.ID, uuid.Nil, nil, 10)
	must("ListMessages with a rating", err)
	shared, err := st.InsertShare(ctx, userID, share.NewShare{ID: strings.Repeat("a", share.IDLength), ConversationID: conv.ID, Snapshot: share.Snapshot{Title: "t"}})
	must("InsertShare", err)
	_, err = st.GetSnapshot(ctx, shared.ID)
	must("GetSnapshot", err)
	_, err = st.ListShares(ctx, userID, conv.ID, nil, 10)
	must("ListShares", err)
	must("DeleteShare", st.DeleteShare(ctx, userID, shared.ID))
	_, err = st.InsertShare(ctx, userID, share.NewShare{ID: strings.Repeat("b", share.IDLength), ConversationID: conv.ID, Snapshot: share.Snapshot{Title: "t"}})
	must("InsertShare, kept for the conversation's delete", err)
	must("DeleteRating", st.DeleteRating(ctx, userID, asked.ID))

	art, _, err := st.CreateArtifact(ctx, userID, artifact.NewArtifact{
		Title: "notes", Kind: artifact.KindSheet, Content: "a,b\n1,2\n", ConversationID: conv.ID, MessageID: answer.ID,
		RequestID: "a1", Author: artifact.AuthorUser,
	})
	must("CreateArtifact", err)
	_, _, err = st.CreateArtifact(ctx, userID, artifact.NewArtifact{Title: "notes", Kind: artifact.KindSheet, RequestID: "a1", Author: artifact.AuthorUser})
	must("CreateArtifact, retried", err)
	_, _, err = st.GetArtifact(ctx, userID, art.ID, 1)
	must("GetArtifact", err)
	_, err = st.GetHead(ctx, userID, art.ID)
	must("GetHead", err)
	_, err = st.ListArtifacts(ctx, userID, artifact.Filter{}, nil, 10)
	must("ListArtifacts", err)
	_, err = st.ListArtifacts(ctx, userID, artifact.Filter{ConversationID: conv.ID, Kind: artifact.KindSheet}, nil, 10)
	must("ListArtifacts of a conversation", err)
	_, _, err = st.AddVersion(ctx, userID, artifact.Edit{ArtifactID: art.ID, BaseVersion: 1, Content: "a,b\n", Author: artifact.AuthorAssistant, ConversationID: conv.ID, MessageID: answer.ID})
	must("AddVersion", err)
	_, err = st.ListVersions(ctx, userID, art.ID, 0, 10)
	must("ListVersions", err)
	for _, config := range search.Configs {
		_, err = st.Search(ctx, userID, search.Query{Text: "hello notes", Config: config, Messages: true, Artifacts: true, Limit: 10})
		must("Search "+config, err)
	}
	_, err = st.SaveCustomer(ctx, userID, "cus_"+userID.String())
	must("SaveCustomer", err)
	_, err = st.Subscription(ctx, userID)
	must("Subscription", err)
	_, err = st.PlanName(ctx, userID)
	must("PlanName", err)
	for _, c := range []billing.Change{
		{Link: &billing.Link{UserID: userID, CustomerID: "cus_" + userID.String(), SubscriptionID: "sub_1"}},
		{Set: &billing.SubscriptionUpdate{CustomerID: "cus_" + userID.String(), SubscriptionID: "sub_1", Plan: "pro", Status: billing.StatusActive}},
		{PastDue: &billing.PastDue{CustomerID: "cus_" + userID.String(), SubscriptionID: "sub_1"}},
	} {
		_, err = st.ApplyEvent(ctx, billing.EventRecord{ID: "evt_" + uuid.NewString(), Type: "t", Time: time.Now()}, c)
		must("ApplyEvent", err)
	}
	other, _, err := st.CreateArtifact(ctx, userID, artifact.NewArtifact{Title: "to delete", Kind: artifact.KindText, Author: artifact.AuthorUser})
	must("CreateArtifact, another", err)
	must("DeleteArtifact", st.DeleteArtifact(ctx, userID, other.ID))

	// The conversation's delete unlinks its artifact (as the owner).
	_, err = st.DeleteConversation(ctx, userID, conv.ID)
	must("DeleteConversation", err)
	prompt := "be brief"
	_, err = st.UpsertProfile(ctx, user.Identity{UserID: userID, Email: "a@example.com"}, user.Patch{DefaultSystemPrompt: &prompt})
	must("UpsertProfile", err)
	kept, _, err := st.GetArtifact(ctx, userID, art.ID, 0)
	must("GetArtifact after DeleteConversation", err)
	if kept.ConversationID != uuid.Nil || kept.MessageID != uuid.Nil {
		t.Errorf("after the conversation's delete the artifact still links %s, %s", kept.ConversationID, kept.MessageID)
	}
	_, err = st.MonthUsage(ctx, userID, time.Now().AddDate(0, -1, 0), time.Now().AddDate(0, 1, 0))
	must("MonthUsage", err)
	_, err = st.ExportUser(ctx, userID)
	must("ExportUser", err)
	// DeleteMe: everything of the user, as the service role.
	_, err = st.DeleteUser(ctx, userID)
	must("DeleteUser", err)
}
