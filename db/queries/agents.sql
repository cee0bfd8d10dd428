-- Agent runs, their steps, their events, and the QStash outbox.

-- name: LockUserRuns :exec
-- Serializes a user's StartRuns for the rest of the transaction, so the
-- cap on runs in progress holds when two start at once.
SELECT pg_advisory_xact_lock(hashtextextended('parley.agent_runs:' || CAST(@user_id::uuid AS text), 0));

-- name: GetAgentRunIDByRequestID :one
SELECT id FROM parley.agent_runs WHERE user_id = @user_id AND request_id = @request_id;

-- name: CountActiveAgentRuns :one
SELECT count(*) FROM parley.agent_runs WHERE user_id = @user_id AND status IN ('queued', 'running');

-- name: InsertAgentRun :one
-- Saves a run and its five steps, the first queued as attempt 1. Nothing
-- is saved unless the conversation (if any) is the user's.
WITH conv AS (
    SELECT (SELECT c.id FROM parley.conversations c
            WHERE c.id = sqlc.narg('conversation_id')::uuid AND c.user_id = @user_id) AS id
), run AS (
    INSERT INTO parley.agent_runs (id, user_id, conversation_id, goal, model, tools, quota_tokens, request_id)
    SELECT @id, @user_id, conv.id, @goal, @model, @tools::text[], @quota_tokens, sqlc.narg('request_id')
    FROM conv
    WHERE sqlc.narg('conversation_id')::uuid IS NULL OR conv.id IS NOT NULL
    RETURNING *
), steps AS (
    INSERT INTO parley.agent_steps (run_id, idx, name, attempt)
    SELECT run.id, s.idx - 1, s.name, CASE WHEN s.idx = 1 THEN 1 ELSE 0 END
    FROM run, unnest(@step_names::text[]) WITH ORDINALITY AS s(name, idx)
)
SELECT * FROM run;

-- name: GetAgentRun :one
SELECT * FROM parley.agent_runs WHERE id = @id AND user_id = @user_id;

-- name: ListAgentSteps :many
SELECT * FROM parley.agent_steps WHERE run_id = @run_id ORDER BY idx;

-- name: ListAgentRuns :many
-- Keyset pagination, newest first: the cursor is the (create_time, id) of
-- the last run of the previous page.
SELECT * FROM parley.agent_runs
WHERE user_id = @user_id
  AND (sqlc.narg('after_time')::timestamptz IS NULL
       OR (create_time, id) < (sqlc.narg('after_time')::timestamptz, sqlc.narg('after_id')::uuid))
ORDER BY create_time DESC, id DESC
LIMIT @max_rows;

-- name: ListAgentStepsOfRuns :many
-- The steps of a page of runs, without their output.
SELECT run_id, idx, name, status, attempt, error, total_tokens, start_time, end_time
FROM parley.agent_steps WHERE run_id = ANY(@run_ids::uuid[]) ORDER BY run_id, idx;

-- name: RequestAgentRunCancel :one
-- Marks a run to be canceled. A run that has ended stays as it is.
UPDATE parley.agent_runs
SET cancel_requested = true, update_time = now()
WHERE id = @id AND user_id = @user_id AND status IN ('queued', 'running')
RETURNING id;

-- name: CancelIdleAgentRun :one
-- Cancels a run at once when no delivery runs one of its steps (a live
-- lease); otherwise the step that runs ends the run when it sees the flag.
WITH run AS (
    UPDATE parley.agent_runs r
    SET status = 'canceled', end_time = now(), update_time = now()
    WHERE r.id = @id AND r.status IN ('queued', 'running') AND r.cancel_requested
      AND NOT EXISTS (SELECT 1 FROM parley.agent_steps s
                      WHERE s.run_id = r.id AND s.status = 'running' AND s.lease_until > now())
    RETURNING r.id, r.step
), steps AS (
    UPDATE parley.agent_steps s SET status = 'canceled', lease_owner = NULL, lease_until = NULL, end_time = now()
    FROM run WHERE s.run_id = run.id AND s.status IN ('pending', 'running') AND s.attempt > 0
)
SELECT id, step FROM run;

-- name: ClaimAgentStep :one
-- Takes the lease on a step's attempt for one delivery, and marks the run
-- running. Nothing changes when the step has ended, the attempt is not the
-- step's current one, another delivery holds a live lease, or the run was
-- asked to cancel.
WITH claimed AS (
    UPDATE parley.agent_steps s
    SET status = 'running', lease_owner = @owner, lease_until = now() + make_interval(secs => @lease_seconds::float8),
        start_time = COALESCE(s.start_time, now())
    FROM parley.agent_runs r
    WHERE s.run_id = @run_id AND s.idx = @idx AND s.attempt = @attempt AND r.id = s.run_id
      AND s.status IN ('pending', 'running') AND (s.lease_until IS NULL OR s.lease_until < now())
      AND r.status IN ('queued', 'running') AND NOT r.cancel_requested
    RETURNING s.run_id, s.tool_rounds
), run AS (
    UPDATE parley.agent_runs r SET status = 'running', step = @idx, update_time = now()
    FROM claimed WHERE r.id = claimed.run_id
    RETURNING r.*
)
SELECT run.*, claimed.tool_rounds AS step_tool_rounds,
       COALESCE((SELECT u.used_tokens + u.reserved_tokens FROM parley.token_usage u
                 WHERE u.user_id = run.user_id AND u.month = @month::date), 0)::bigint AS month_tokens
FROM run, claimed;

-- name: GetAgentStepState :one
-- Why a claim took nothing.
SELECT s.status, s.attempt, s.lease_until, r.status AS run_status, r.cancel_requested, now()::timestamptz AS db_now
FROM parley.agent_steps s JOIN parley.agent_runs r ON r.id = s.run_id
WHERE s.run_id = @run_id AND s.idx = @idx;

-- name: AppendAgentEvents :one
-- Appends a run's events with the next seqs and wakes its watchers. With
-- an owner, the events are the running step's: they are saved only while
-- that delivery holds the step's lease, which they renew; the row says
-- whether the run was asked to cancel. No row: the lease was lost. The
-- step's finished tool rounds, when given, are saved with them, so an
-- attempt that dies after a tool call does not make it again.
WITH lease AS (
    UPDATE parley.agent_steps s
    SET lease_until = now() + make_interval(secs => @lease_seconds::float8),
        tool_rounds = COALESCE(sqlc.narg('tool_rounds')::jsonb, s.tool_rounds)
    WHERE sqlc.narg('owner')::uuid IS NOT NULL
      AND s.run_id = @run_id AND s.idx = @step AND s.lease_owner = sqlc.narg('owner')::uuid AND s.status = 'running'
    RETURNING 1
), run AS (
    UPDATE parley.agent_runs r
    SET last_seq = r.last_seq + cardinality(@kinds::text[]), update_time = now()
    WHERE r.id = @run_id AND (sqlc.narg('owner')::uuid IS NULL OR EXISTS (SELECT 1 FROM lease))
    RETURNING r.last_seq, r.cancel_requested
), ins AS (
    INSERT INTO parley.agent_events (run_id, seq, step, kind, data)
    SELECT @run_id, run.last_seq - cardinality(@kinds::text[]) + i, @step, (@kinds::text[])[i], (@datas::jsonb[])[i]
    FROM run, generate_subscripts(@kinds::text[], 1) AS i
), woke AS (
    SELECT pg_notify('parley_agent', 'e:' || @run_id::text) FROM run
)
SELECT run.last_seq, run.cancel_requested FROM run, woke;

-- name: NotifyAgent :exec
-- Wakes every instance's listener (delivered when the transaction commits).
SELECT pg_notify('parley_agent', @payload::text);

-- name: ListAgentEvents :many
-- A run's events, the user's only.
SELECT e.* FROM parley.agent_events e
JOIN parley.agent_runs r ON r.id = e.run_id AND r.user_id = @user_id
WHERE e.run_id = @run_id AND e.seq > @after_seq
ORDER BY e.seq
LIMIT @max_rows;

-- name: EndAgentStep :execrows
-- Ends the step a delivery runs, only while it holds the lease.
UPDATE parley.agent_steps
SET status = @status, output = @output, tool_rounds = sqlc.narg('tool_rounds')::jsonb, error = @error,
    total_tokens = total_tokens + @tokens, lease_owner = NULL, lease_until = NULL,
    end_time = CASE WHEN @status IN ('succeeded', 'failed', 'canceled') THEN now() END
WHERE run_id = @run_id AND idx = @idx AND lease_owner = @owner AND status = 'running';

-- name: RetryAgentStep :execrows
-- Queues a step's next attempt after a transient failure, only while the
-- failed delivery holds the lease.
UPDATE parley.agent_steps
SET status = 'pending', attempt = attempt + 1, output = @output, error = @error,
    tool_rounds = sqlc.narg('tool_rounds')::jsonb,
    total_tokens = total_tokens + @tokens, lease_owner = NULL, lease_until = NULL
WHERE run_id = @run_id AND idx = @idx AND lease_owner = @owner AND status = 'running';

-- name: ReleaseAgentStep :exec
-- Gives back a step whose delivery ended before it (shutdown) or could not
-- save its outcome: the same attempt is pending again, and the next
-- delivery does not wait for the lease to expire.
UPDATE parley.agent_steps SET status = 'pending', lease_owner = NULL, lease_until = NULL
WHERE run_id = @run_id AND idx = @idx AND lease_owner = @owner AND status = 'running';

-- name: QueueAgentStep :exec
UPDATE parley.agent_steps SET attempt = 1 WHERE run_id = @run_id AND idx = @idx AND attempt = 0;

-- name: UpdateAgentRun :exec
-- Moves a run on: its tokens, its next step, or its end.
UPDATE parley.agent_runs
SET status = @status, step = @step, total_tokens = total_tokens + @tokens,
    summary = @summary, error = @error, summary_message_id = sqlc.narg('summary_message_id')::uuid,
    end_time = CASE WHEN @status IN ('succeeded', 'failed', 'canceled') THEN now() END,
    update_time = now()
WHERE id = @id;

-- name: ChargeTokens :exec
-- Counts tokens used outside an answer (an agent's steps) against the
-- user's monthly quota.
INSERT INTO parley.token_usage AS u (user_id, month, used_tokens)
VALUES (@user_id, @month::date, @tokens)
ON CONFLICT (user_id, month) DO UPDATE SET used_tokens = u.used_tokens + EXCLUDED.used_tokens;

-- name: PostAgentSummary :one
-- Posts a run's summary to its conversation as a finished assistant
-- message after the branch the user is on, and makes it the active leaf.
WITH conv AS (
    SELECT c.id, c.active_leaf_id FROM parley.conversations c
    WHERE c.id = @conversation_id AND c.user_id = @user_id
    FOR UPDATE
), msg AS (
    INSERT INTO parley.messages (conversation_id, user_id, parent_id, role, content, status, model,
                                 prompt_tokens, completion_tokens, finish_reason, create_time, update_time)
    SELECT conv.id, @user_id, conv.active_leaf_id, 'assistant', @content, 'completed', @model,
           @prompt_tokens, @completion_tokens, 'stop', clock_timestamp(), clock_timestamp()
    FROM conv
    RETURNING id, conversation_id
), leaf AS (
    UPDATE parley.conversations c SET active_leaf_id = msg.id, update_time = now()
    FROM msg WHERE c.id = msg.conversation_id
)
SELECT id FROM msg;

-- name: InsertAgentOutbox :exec
INSERT INTO parley.agent_outbox (run_id, step, attempt, requeue, not_before)
VALUES (@run_id, @step, @attempt, @requeue, @not_before);

-- name: ClaimAgentOutbox :many
-- Takes up to @max_rows unpublished rows written before @before for one
-- publish attempt: a row whose publish fails is tried again after a
-- backoff (5 s doubling, at most 10 minutes), so it never holds up the
-- rows behind it, and two instances never publish a row at the same time.
UPDATE parley.agent_outbox o
SET publish_attempts = o.publish_attempts + 1,
    next_try_time = now() + make_interval(secs => LEAST(5 * power(2, o.publish_attempts), 600))
WHERE o.id IN (
    SELECT x.id FROM parley.agent_outbox x
    WHERE x.publish_time IS NULL AND x.create_time < @before AND (x.next_try_time IS NULL OR x.next_try_time < now())
    ORDER BY x.create_time
    LIMIT @max_rows
    FOR UPDATE SKIP LOCKED)
RETURNING o.id, o.run_id, o.step, o.attempt, o.requeue, o.not_before;

-- name: MarkAgentOutboxPublished :exec
UPDATE parley.agent_outbox SET publish_time = now() WHERE id = ANY(@ids::bigint[]);

-- name: MarkAgentTaskPublished :exec
-- Marks the outbox row of a task published right after its commit.
UPDATE parley.agent_outbox SET publish_time = now()
WHERE run_id = @run_id AND step = @step AND attempt = @attempt AND requeue = @requeue AND publish_time IS NULL;

-- name: ForgetPublishedAgentOutbox :execrows
DELETE FROM parley.agent_outbox WHERE publish_time < @before;

-- name: GetMonthTokens :one
SELECT COALESCE((SELECT used_tokens + reserved_tokens FROM parley.token_usage
                 WHERE user_id = @user_id AND month = @month::date), 0)::bigint;

-- name: ListStrandedAgentSteps :many
-- Runs in progress whose current step nothing works on: queued or waiting
-- for a retry since before @pending_before with no delivery, or running
-- under a lease that lapsed before @lease_before (its instance died).
SELECT r.id, r.step, s.attempt, r.requeues
FROM parley.agent_runs r
JOIN parley.agent_steps s ON s.run_id = r.id AND s.idx = r.step
WHERE r.status IN ('queued', 'running') AND s.attempt > 0
  AND ((s.status = 'pending' AND r.update_time < @pending_before)
       OR (s.status = 'running' AND s.lease_until < @lease_before))
ORDER BY r.update_time
LIMIT @max_rows;

-- name: RequeueAgentRun :one
-- Counts a requeue of a stranded run, once: of two sweeps that found it,
-- the one whose count is stale changes nothing.
UPDATE parley.agent_runs SET requeues = requeues + 1, update_time = now()
WHERE id = @id AND requeues = @requeues AND status IN ('queued', 'running')
RETURNING requeues;

-- name: QStashMessageSeen :one
SELECT EXISTS (SELECT 1 FROM parley.qstash_messages WHERE message_id = @message_id AND expire_time > now());

-- name: QStashMessageDone :exec
INSERT INTO parley.qstash_messages (message_id, expire_time) VALUES (@message_id, @expire_time)
ON CONFLICT (message_id) DO UPDATE SET expire_time = GREATEST(parley.qstash_messages.expire_time, EXCLUDED.expire_time);

-- name: ForgetQStashMessages :execrows
DELETE FROM parley.qstash_messages WHERE expire_time < now();
