-- Full-text search over a user's messages and artifacts (migrations 00006, 00008).
-- The two queries are the same but for the text search configuration,
-- which must be a constant for the planner to use that configuration's
-- index: SEARCH_TEXT_CONFIG picks one of them.

-- name: SearchSimple :many
-- Searches with the simple text search configuration (its own indexes
-- and vectors; SearchEnglish is the same with the other's). Messages are
-- searched through their stored vectors in message_search (00008), only
-- final messages being there. One page: the
-- user's matching messages and artifacts, best first, keyset-paginated on
-- (rank, id) below the cursor. Each branch ranks only its own matches
-- (the index, which leads with user_id, finds them) and keeps its best
-- page_limit (artifacts come first only so that sqlc sees a nullable
-- conversation_id); only the page's rows are read again for their snippet,
-- ts_headline being the costly part. The snippet's text is HTML-escaped
-- before the matches are marked, so it can be shown as HTML. A query that
-- parses to nothing (only punctuation, or only stop words) matches nothing.
WITH q AS (
    SELECT query FROM (SELECT websearch_to_tsquery('simple'::regconfig, sqlc.arg('query')::text) AS query) parsed
    WHERE numnode(query) > 0
), hits AS (
    (SELECT 'artifact'::text AS kind, r.id, r.conversation_id, r.rank, r.time
     FROM (SELECT a.id, a.conversation_id, ts_rank(a.search_simple, q.query) AS rank, a.update_time AS time
           FROM parley.artifacts a CROSS JOIN q
           WHERE sqlc.arg('with_artifacts')::bool AND a.user_id = sqlc.arg('user_id') AND a.search_simple @@ q.query
             AND (sqlc.narg('conversation_id')::uuid IS NULL OR a.conversation_id = sqlc.narg('conversation_id')::uuid)) r
     WHERE sqlc.narg('after_rank')::real IS NULL OR (r.rank, r.id) < (sqlc.narg('after_rank')::real, sqlc.narg('after_id')::uuid)
     ORDER BY r.rank DESC, r.id DESC
     LIMIT sqlc.arg('page_limit'))
    UNION ALL
    (SELECT 'message'::text AS kind, r.id, r.conversation_id, r.rank, r.time
     FROM (SELECT s.message_id AS id, s.conversation_id, ts_rank(s.search_simple, q.query) AS rank, s.create_time AS time
           FROM parley.message_search s CROSS JOIN q
           WHERE sqlc.arg('with_messages')::bool AND s.user_id = sqlc.arg('user_id') AND s.search_simple @@ q.query
             AND (sqlc.narg('conversation_id')::uuid IS NULL OR s.conversation_id = sqlc.narg('conversation_id')::uuid)) r
     WHERE sqlc.narg('after_rank')::real IS NULL OR (r.rank, r.id) < (sqlc.narg('after_rank')::real, sqlc.narg('after_id')::uuid)
     ORDER BY r.rank DESC, r.id DESC
     LIMIT sqlc.arg('page_limit'))
), page AS (
    SELECT h.kind, h.id, h.conversation_id, h.rank, h.time FROM hits h
    ORDER BY h.rank DESC, h.id DESC
    LIMIT sqlc.arg('page_limit')
)
SELECT p.kind, p.id, p.conversation_id, p.rank::real AS rank, p.time::timestamptz AS time,
       COALESCE(a.title, c.title, '')::text AS title,
       ts_headline('simple'::regconfig,
                   replace(replace(replace(left(COALESCE(m.content, a.content, ''), 262144), '&', '&amp;'), '<', '&lt;'), '>', '&gt;'),
                   q.query,
                   'StartSel=<mark>, StopSel=</mark>, MaxWords=30, MinWords=12, ShortWord=0, MaxFragments=2, FragmentDelimiter=" … "')::text AS snippet
FROM page p
CROSS JOIN q
LEFT JOIN parley.messages m ON p.kind = 'message' AND m.id = p.id AND m.user_id = sqlc.arg('user_id')
LEFT JOIN parley.conversations c ON c.id = m.conversation_id AND c.user_id = sqlc.arg('user_id')
LEFT JOIN parley.artifacts a ON p.kind = 'artifact' AND a.id = p.id AND a.user_id = sqlc.arg('user_id')
ORDER BY p.rank DESC, p.id DESC;

-- name: SearchEnglish :many
-- Searches with the english text search configuration (its own indexes
-- and artifact vectors; SearchSimple is the same with the other's). The
-- message expressions are those of the indexes, word for word. One page: the
-- user's matching messages and artifacts, best first, keyset-paginated on
-- (rank, id) below the cursor. Each branch ranks only its own matches
-- (the index, which leads with user_id, finds them) and keeps its best
-- page_limit (artifacts come first only so that sqlc sees a nullable
-- conversation_id); only the page's rows are read again for their snippet,
-- ts_headline being the costly part. The snippet's text is HTML-escaped
-- before the matches are marked, so it can be shown as HTML. A query that
-- parses to nothing (only punctuation, or only stop words) matches nothing.
WITH q AS (
    SELECT query FROM (SELECT websearch_to_tsquery('english'::regconfig, sqlc.arg('query')::text) AS query) parsed
    WHERE numnode(query) > 0
), hits AS (
    (SELECT 'artifact'::text AS kind, r.id, r.conversation_id, r.rank, r.time
     FROM (SELECT a.id, a.conversation_id, ts_rank(a.search_english, q.query) AS rank, a.update_time AS time
           FROM parley.artifacts a CROSS JOIN q
           WHERE sqlc.arg('with_artifacts')::bool AND a.user_id = sqlc.arg('user_id') AND a.search_english @@ q.query
             AND (sqlc.narg('conversation_id')::uuid IS NULL OR a.conversation_id = sqlc.narg('conversation_id')::uuid)) r
     WHERE sqlc.narg('after_rank')::real IS NULL OR (r.rank, r.id) < (sqlc.narg('after_rank')::real, sqlc.narg('after_id')::uuid)
     ORDER BY r.rank DESC, r.id DESC
     LIMIT sqlc.arg('page_limit'))
    UNION ALL
    (SELECT 'message'::text AS kind, r.id, r.conversation_id, r.rank, r.time
     FROM (SELECT s.message_id AS id, s.conversation_id, ts_rank(s.search_english, q.query) AS rank, s.create_time AS time
           FROM parley.message_search s CROSS JOIN q
           WHERE sqlc.arg('with_messages')::bool AND s.user_id = sqlc.arg('user_id') AND s.search_english @@ q.query
             AND (sqlc.narg('conversation_id')::uuid IS NULL OR s.conversation_id = sqlc.narg('conversation_id')::uuid)) r
     WHERE sqlc.narg('after_rank')::real IS NULL OR (r.rank, r.id) < (sqlc.narg('after_rank')::real, sqlc.narg('after_id')::uuid)
     ORDER BY r.rank DESC, r.id DESC
     LIMIT sqlc.arg('page_limit'))
), page AS (
    SELECT h.kind, h.id, h.conversation_id, h.rank, h.time FROM hits h
    ORDER BY h.rank DESC, h.id DESC
    LIMIT sqlc.arg('page_limit')
)
SELECT p.kind, p.id, p.conversation_id, p.rank::real AS rank, p.time::timestamptz AS time,
       COALESCE(a.title, c.title, '')::text AS title,
       ts_headline('english'::regconfig,
                   replace(replace(replace(left(COALESCE(m.content, a.content, ''), 262144), '&', '&amp;'), '<', '&lt;'), '>', '&gt;'),
                   q.query,
                   'StartSel=<mark>, StopSel=</mark>, MaxWords=30, MinWords=12, ShortWord=0, MaxFragments=2, FragmentDelimiter=" … "')::text AS snippet
FROM page p
CROSS JOIN q
LEFT JOIN parley.messages m ON p.kind = 'message' AND m.id = p.id AND m.user_id = sqlc.arg('user_id')
LEFT JOIN parley.conversations c ON c.id = m.conversation_id AND c.user_id = sqlc.arg('user_id')
LEFT JOIN parley.artifacts a ON p.kind = 'artifact' AND a.id = p.id AND a.user_id = sqlc.arg('user_id')
ORDER BY p.rank DESC, p.id DESC;
