-- name: UpsertProfile :one
-- Creates the profile from the token's claims on the first call, and on
-- later ones copies the newest token's email and anonymous flag (a user
-- who links an email to an anonymous sign-in stops being anonymous). NULL
-- preferences leave their column unchanged (empty on a new profile). One
-- statement, so two first calls that race make one row.
INSERT INTO parley.profiles AS p (user_id, email, anonymous, display_name, default_model, default_system_prompt)
VALUES (@user_id, @email, @anonymous,
        COALESCE(sqlc.narg('display_name')::text, ''),
        COALESCE(sqlc.narg('default_model')::text, ''),
        COALESCE(sqlc.narg('default_system_prompt')::text, ''))
ON CONFLICT (user_id) DO UPDATE
SET email                 = EXCLUDED.email,
    anonymous             = EXCLUDED.anonymous,
    display_name          = COALESCE(sqlc.narg('display_name')::text, p.display_name),
    default_model         = COALESCE(sqlc.narg('default_model')::text, p.default_model),
    default_system_prompt = COALESCE(sqlc.narg('default_system_prompt')::text, p.default_system_prompt),
    update_time           = CASE
        WHEN (p.email, p.anonymous) IS DISTINCT FROM (EXCLUDED.email, EXCLUDED.anonymous)
          OR sqlc.narg('display_name')::text IS NOT NULL
          OR sqlc.narg('default_model')::text IS NOT NULL
          OR sqlc.narg('default_system_prompt')::text IS NOT NULL
        THEN now() ELSE p.update_time END
RETURNING *;

-- name: GetMonthUsage :one
-- The month's totals for GetUsage. used/reserved/active are token_usage's
-- (what the quota counts); answer_tokens are the prompt and completion
-- tokens of the user's answers created in the month (as FinishMessage
-- charges them, to the month the answer started), agent_tokens those of
-- their agent steps that ended in the month.
SELECT
    COALESCE(u.used_tokens, 0)::bigint        AS used_tokens,
    COALESCE(u.reserved_tokens, 0)::bigint    AS reserved_tokens,
    COALESCE(u.active_generations, 0)::int    AS active_generations,
    (SELECT COALESCE(sum(m.prompt_tokens + m.completion_tokens), 0) FROM parley.messages m
     WHERE m.user_id = @user_id AND m.role = 'assistant' AND m.generation_id IS NOT NULL
       AND m.create_time >= @month_start AND m.create_time < @month_end)::bigint AS answer_tokens,
    (SELECT COALESCE(sum(s.total_tokens), 0) FROM parley.agent_steps s
     JOIN parley.agent_runs r ON r.id = s.run_id
     WHERE r.user_id = @user_id AND s.end_time >= @month_start AND s.end_time < @month_end)::bigint AS agent_tokens
FROM (SELECT 1) one
LEFT JOIN parley.token_usage u ON u.user_id = @user_id AND u.month = @month_start::date;

-- name: ListMonthModelUsage :many
-- The month's answer and agent tokens by model, as GetMonthUsage counts
-- them; models with no tokens are left out.
SELECT kind::text AS kind, model::text AS model, sum(tokens)::bigint AS tokens
FROM (
    SELECT 'answer' AS kind, m.model, m.prompt_tokens + m.completion_tokens AS tokens
    FROM parley.messages m
    WHERE m.user_id = @user_id AND m.role = 'assistant' AND m.generation_id IS NOT NULL
      AND m.create_time >= @month_start AND m.create_time < @month_end
    UNION ALL
    SELECT 'agent_run', r.model, s.total_tokens
    FROM parley.agent_steps s JOIN parley.agent_runs r ON r.id = s.run_id
    WHERE r.user_id = @user_id AND s.end_time >= @month_start AND s.end_time < @month_end
) t
GROUP BY 1, 2
HAVING sum(tokens) > 0
ORDER BY 3 DESC, 1, 2;

-- name: LockUserConversations :many
-- Taken first in DeleteUser's transaction: an exchange being saved in one
-- of the user's conversations holds a key-share lock on it, so this waits
-- for it and the streaming answers read next include it; an exchange saved
-- after it fails its foreign key check once the conversations are gone.
SELECT id FROM parley.conversations
WHERE user_id = @user_id
FOR UPDATE;

-- name: ListUserStreamingAnswers :many
-- The generations of the user's answers still being written, so that
-- their instances can be told to stop once they are deleted.
SELECT generation_id::uuid FROM parley.messages
WHERE user_id = @user_id AND status = 'streaming' AND generation_id IS NOT NULL
FOR UPDATE;

-- name: CancelUserRuns :many
-- Asks the user's runs in progress to cancel, so that a step still running
-- (told through NOTIFY) stops before its run is deleted under it.
UPDATE parley.agent_runs
SET cancel_requested = true, update_time = now()
WHERE user_id = @user_id AND status IN ('queued', 'running')
RETURNING id;

-- name: DeleteUserArtifacts :exec
-- Versions go with their artifact (ON DELETE CASCADE).
DELETE FROM parley.artifacts WHERE user_id = @user_id;

-- name: DeleteUserRuns :exec
-- Steps, events and outbox rows go with their run (ON DELETE CASCADE).
DELETE FROM parley.agent_runs WHERE user_id = @user_id;

-- name: DeleteUserConversations :exec
-- Messages, and their search rows, go with their conversation.
DELETE FROM parley.conversations WHERE user_id = @user_id;

-- name: DeleteUserUsage :exec
DELETE FROM parley.token_usage WHERE user_id = @user_id;

-- name: DeleteUserSubscription :exec
-- The subscription row (canceled at Stripe first by the caller); the
-- Stripe events it came from name no user and stay as a record of what was
-- handled.
DELETE FROM parley.subscriptions WHERE user_id = @user_id;

-- name: DeleteProfile :exec
DELETE FROM parley.profiles WHERE user_id = @user_id;

-- name: ExportUser :one
-- Everything the user owns as one JSON document, in one statement (so one
-- snapshot): the profile, each conversation with every message of every
-- branch and a Markdown rendering, each artifact with every version, each
-- agent run with its steps and events, the monthly usage, and the billing
-- subscription. A message's attachments come with their content (base64)
-- when it is stored here, or with their object key when it is in object
-- storage (GetAttachment signs a URL for it); each message carries the
-- user's rating of it (null when unrated), each conversation its live
-- shares with their snapshots. Rows are in
-- a fixed order, so the same data exports to the same bytes and an export
-- can be resumed at an offset. Internal rows are left out: search vectors
-- (derived from messages), leases, and queued tasks.
SELECT json_build_object(
    'format', 'parley.export.v1',
    'user_id', @user_id::uuid,
    'profile', (SELECT json_build_object(
            'email', p.email, 'anonymous', p.anonymous, 'display_name', p.display_name,
            'default_model', p.default_model, 'default_system_prompt', p.default_system_prompt,
            'create_time', p.create_time, 'update_time', p.update_time)
        FROM parley.profiles p WHERE p.user_id = @user_id),
    'conversations', COALESCE((SELECT json_agg(json_build_object(
            'id', c.id, 'title', c.title, 'system_prompt', c.system_prompt, 'model', c.model,
            'active_leaf_id', c.active_leaf_id, 'create_time', c.create_time, 'update_time', c.update_time,
            'messages', COALESCE((SELECT json_agg(json_build_object(
                    'id', m.id, 'parent_id', m.parent_id, 'role', m.role, 'content', m.content, 'status', m.status,
                    'model', m.model, 'prompt_tokens', m.prompt_tokens, 'completion_tokens', m.completion_tokens,
                    'finish_reason', m.finish_reason, 'tool_rounds', m.tool_rounds, 'cached', m.cached,
                    'attachments', COALESCE((SELECT json_agg(json_build_object(
                            'id', at.id, 'name', at.name, 'content_type', at.content_type, 'kind', at.kind,
                            'size_bytes', at.size_bytes, 'width', at.width, 'height', at.height, 'sha256', at.sha256,
                            'content_base64', translate(encode(at.content, 'base64'), E'\n', ''),
                            'object_key', at.object_key, 'create_time', at.create_time) ORDER BY at.position)
                        FROM parley.attachments at WHERE at.message_id = m.id AND at.user_id = @user_id), '[]'::json),
                    'create_time', m.create_time, 'update_time', m.update_time,
                    'rating', (SELECT json_build_object('rating', r.rating, 'text', r.comment, 'tags', r.tags,
                            'create_time', r.create_time, 'update_time', r.update_time)
                        FROM parley.message_ratings r WHERE r.message_id = m.id AND r.user_id = @user_id))
                    ORDER BY m.create_time, m.id)
                FROM parley.messages m WHERE m.conversation_id = c.id AND m.user_id = @user_id), '[]'::json),
            'shares', COALESCE((SELECT json_agg(json_build_object(
                    'id', sh.id, 'title', sh.title, 'include_system_prompt', sh.include_system_prompt,
                    'message_count', sh.message_count, 'create_time', sh.create_time, 'snapshot', sh.snapshot)
                    ORDER BY sh.create_time, sh.id)
                FROM parley.shares sh WHERE sh.conversation_id = c.id AND sh.user_id = @user_id), '[]'::json),
            'markdown', '# ' || CASE WHEN c.title = '' THEN 'Untitled conversation' ELSE c.title END || E'\n'
                || COALESCE((SELECT string_agg(
                    E'\n## ' || initcap(m.role) || CASE WHEN m.model <> '' THEN ' (' || m.model || ')' ELSE '' END
                    || CASE WHEN m.parent_id IS NULL THEN '' ELSE ', replying to ' || m.parent_id::text END
                    || E'\n\n' || m.content || E'\n', '' ORDER BY m.create_time, m.id)
                FROM parley.messages m WHERE m.conversation_id = c.id AND m.user_id = @user_id), '')
        ) ORDER BY c.create_time, c.id)
        FROM parley.conversations c WHERE c.user_id = @user_id), '[]'::json),
    'artifacts', COALESCE((SELECT json_agg(json_build_object(
            'id', a.id, 'title', a.title, 'kind', a.kind, 'language', a.language,
            'conversation_id', a.conversation_id, 'message_id', a.message_id, 'latest_version', a.latest_version,
            'create_time', a.create_time, 'update_time', a.update_time,
            'versions', COALESCE((SELECT json_agg(json_build_object(
                    'version', v.version, 'title', v.title, 'content', v.content, 'author', v.author,
                    'conversation_id', v.conversation_id, 'message_id', v.message_id, 'create_time', v.create_time)
                    ORDER BY v.version)
                FROM parley.artifact_versions v WHERE v.artifact_id = a.id AND v.user_id = @user_id), '[]'::json)
        ) ORDER BY a.create_time, a.id)
        FROM parley.artifacts a WHERE a.user_id = @user_id), '[]'::json),
    'agent_runs', COALESCE((SELECT json_agg(json_build_object(
            'id', r.id, 'conversation_id', r.conversation_id, 'goal', r.goal, 'model', r.model, 'tools', r.tools,
            'status', r.status, 'summary', r.summary, 'error', r.error, 'total_tokens', r.total_tokens,
            'create_time', r.create_time, 'end_time', r.end_time,
            'steps', COALESCE((SELECT json_agg(json_build_object(
                    'index', s.idx, 'name', s.name, 'status', s.status, 'output', s.output, 'error', s.error,
                    'total_tokens', s.total_tokens, 'start_time', s.start_time, 'end_time', s.end_time) ORDER BY s.idx)
                FROM parley.agent_steps s WHERE s.run_id = r.id), '[]'::json),
            'events', COALESCE((SELECT json_agg(json_build_object(
                    'seq', e.seq, 'step', e.step, 'kind', e.kind, 'data', e.data, 'create_time', e.create_time) ORDER BY e.seq)
                FROM parley.agent_events e WHERE e.run_id = r.id), '[]'::json)
        ) ORDER BY r.create_time, r.id)
        FROM parley.agent_runs r WHERE r.user_id = @user_id), '[]'::json),
    'token_usage', COALESCE((SELECT json_agg(json_build_object(
            'month', u.month, 'used_tokens', u.used_tokens, 'reserved_tokens', u.reserved_tokens,
            'active_answers', u.active_generations) ORDER BY u.month)
        FROM parley.token_usage u WHERE u.user_id = @user_id), '[]'::json),
    'subscription', (SELECT json_build_object(
            'plan', b.plan, 'status', b.status, 'stripe_customer_id', b.stripe_customer_id,
            'stripe_subscription_id', b.stripe_subscription_id, 'current_period_end', b.current_period_end,
            'cancel_at_period_end', b.cancel_at_period_end, 'past_due_since', b.past_due_since)
        FROM parley.subscriptions b WHERE b.user_id = @user_id)
)::text AS document;
