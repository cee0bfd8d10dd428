-- +goose Up
-- The turns of an answer in which the model called tools (the text before
-- the calls, the calls and what they returned), as JSON, so the next
-- turn's prompt, a resumed stream and ListMessages show them. NULL for
-- answers without tool calls and for other messages.
ALTER TABLE parley.messages ADD COLUMN tool_rounds jsonb;

-- +goose Down
ALTER TABLE parley.messages DROP COLUMN tool_rounds;
