-- +goose Up
-- Agent runs: a goal worked on in five steps, each its own unit of work.
-- A step's result and the task for the next step are saved in one
-- transaction (River's job, or an outbox row for QStash), so a crash
-- between the two cannot strand a run.
CREATE TABLE parley.agent_runs (
    id               uuid        PRIMARY KEY DEFAULT gen_random_uuid(),
    user_id          uuid        NOT NULL,
    -- The conversation the summary is posted to; the run outlives it.
    conversation_id  uuid        REFERENCES parley.conversations (id) ON DELETE SET NULL,
    goal             text        NOT NULL,
    model            text        NOT NULL,
    -- Tool names the steps may call.
    tools            text[]      NOT NULL,
    status           text        NOT NULL DEFAULT 'queued'
                     CHECK (status IN ('queued', 'running', 'succeeded', 'failed', 'canceled')),
    -- The index of the step running or queued next (0 = plan).
    step             int         NOT NULL DEFAULT 0,
    summary          text        NOT NULL DEFAULT '',
    error            text        NOT NULL DEFAULT '',
    -- The monthly token quota of the user's plan when the run started;
    -- steps stop when the month's usage reaches it (0: no quota).
    quota_tokens     bigint      NOT NULL DEFAULT 0,
    total_tokens     bigint      NOT NULL DEFAULT 0,
    cancel_requested boolean     NOT NULL DEFAULT false,
    -- The assistant message the summary was posted as.
    summary_message_id uuid      REFERENCES parley.messages (id) ON DELETE SET NULL,
    -- The seq of the run's latest event (agent_events).
    last_seq         bigint      NOT NULL DEFAULT 0,
    -- How many times the sweep queued the run's step again because
    -- nothing was working on it (its task lost, or its instance dead).
    requeues         int         NOT NULL DEFAULT 0,
    request_id       text,
    create_time      timestamptz NOT NULL DEFAULT now(),
    update_time      timestamptz NOT NULL DEFAULT now(),
    end_time         timestamptz,
    CONSTRAINT agent_runs_request_id_key UNIQUE (user_id, request_id)
);

-- Serves ListRuns (newest first, keyset on (create_time, id)).
CREATE INDEX agent_runs_user_create_idx ON parley.agent_runs (user_id, create_time DESC, id DESC);
-- Serve the cap on runs in progress per user, and the sweep for runs that
-- nothing works on.
CREATE INDEX agent_runs_user_active_idx ON parley.agent_runs (user_id) WHERE status IN ('queued', 'running');
CREATE INDEX agent_runs_active_update_idx ON parley.agent_runs (update_time) WHERE status IN ('queued', 'running');
CREATE INDEX agent_runs_conversation_idx ON parley.agent_runs (conversation_id);
CREATE INDEX agent_runs_summary_message_idx ON parley.agent_runs (summary_message_id);

CREATE TABLE parley.agent_steps (
    run_id       uuid        NOT NULL REFERENCES parley.agent_runs (id) ON DELETE CASCADE,
    idx          int         NOT NULL CHECK (idx BETWEEN 0 AND 4),
    name         text        NOT NULL,
    status       text        NOT NULL DEFAULT 'pending'
                 CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'canceled')),
    -- The attempt queued or running, from 1; 0 until the step is queued.
    attempt      int         NOT NULL DEFAULT 0,
    output       text        NOT NULL DEFAULT '',
    -- The tool calls of the step's model turns (JSON, as chat's tool_rounds).
    tool_rounds  jsonb,
    error        text        NOT NULL DEFAULT '',
    total_tokens bigint      NOT NULL DEFAULT 0,
    -- The delivery running the step holds it until lease_until; another
    -- delivery of the same step waits for it to end or expire.
    lease_owner  uuid,
    lease_until  timestamptz,
    start_time   timestamptz,
    end_time     timestamptz,
    PRIMARY KEY (run_id, idx)
);

-- What WatchRun replays: every event of a run, in order.
CREATE TABLE parley.agent_events (
    run_id      uuid        NOT NULL REFERENCES parley.agent_runs (id) ON DELETE CASCADE,
    seq         bigint      NOT NULL,
    step        int         NOT NULL,
    kind        text        NOT NULL,
    data        jsonb       NOT NULL,
    create_time timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (run_id, seq)
);

-- QStash's outbox: the next step's task, saved with the previous step's
-- result and published after commit; rows left unpublished (a crash after
-- commit) are published again, which QStash de-duplicates.
CREATE TABLE parley.agent_outbox (
    id           bigint      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    run_id       uuid        NOT NULL REFERENCES parley.agent_runs (id) ON DELETE CASCADE,
    step         int         NOT NULL,
    attempt      int         NOT NULL,
    requeue      int         NOT NULL DEFAULT 0,
    not_before   timestamptz NOT NULL,
    create_time  timestamptz NOT NULL DEFAULT now(),
    publish_time timestamptz,
    -- A row the relay could not publish waits, with backoff, so it never
    -- holds up the rows behind it.
    publish_attempts int     NOT NULL DEFAULT 0,
    next_try_time    timestamptz
);
CREATE INDEX agent_outbox_unpublished_idx ON parley.agent_outbox (create_time) WHERE publish_time IS NULL;
CREATE INDEX agent_outbox_run_idx ON parley.agent_outbox (run_id);

-- QStash message ids already handled, so a replayed delivery runs nothing;
-- kept until the signature that came with it has expired.
CREATE TABLE parley.qstash_messages (
    message_id  text        PRIMARY KEY,
    expire_time timestamptz NOT NULL
);
CREATE INDEX qstash_messages_expire_idx ON parley.qstash_messages (expire_time);

ALTER TABLE parley.agent_runs ENABLE ROW LEVEL SECURITY;
ALTER TABLE parley.agent_steps ENABLE ROW LEVEL SECURITY;
ALTER TABLE parley.agent_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE parley.agent_outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE parley.qstash_messages ENABLE ROW LEVEL SECURITY;

GRANT SELECT, INSERT, UPDATE ON parley.agent_runs TO parley_app;
GRANT SELECT, INSERT, UPDATE ON parley.agent_steps TO parley_app;
GRANT SELECT, INSERT ON parley.agent_events TO parley_app;
GRANT SELECT, INSERT, UPDATE, DELETE ON parley.agent_outbox TO parley_app;
GRANT SELECT, INSERT, DELETE ON parley.qstash_messages TO parley_app;
CREATE POLICY parley_app_all ON parley.agent_runs FOR ALL TO parley_app USING (true) WITH CHECK (true);
CREATE POLICY parley_app_all ON parley.agent_steps FOR ALL TO parley_app USING (true) WITH CHECK (true);
CREATE POLICY parley_app_all ON parley.agent_events FOR ALL TO parley_app USING (true) WITH CHECK (true);
CREATE POLICY parley_app_all ON parley.agent_outbox FOR ALL TO parley_app USING (true) WITH CHECK (true);
CREATE POLICY parley_app_all ON parley.qstash_messages FOR ALL TO parley_app USING (true) WITH CHECK (true);

-- +goose Down
DROP TABLE parley.qstash_messages;
DROP TABLE parley.agent_outbox;
DROP TABLE parley.agent_events;
DROP TABLE parley.agent_steps;
DROP TABLE parley.agent_runs;
