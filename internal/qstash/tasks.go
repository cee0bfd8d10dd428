package qstash

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/parleyhq/parley/internal/agent"
)

// AgentStepPath is where QStash delivers agent steps, outside the Connect
// API.
const AgentStepPath = "/tasks/agent-step"

// Tasks publishes agent tasks to QStash, for the store's outbox: the body
// is the task as JSON, the deduplication id names the task's attempt (so
// the outbox relay may publish a row twice), and a retry's backoff is a
// QStash delay.
type Tasks struct {
	Publisher *Publisher
	// Destination is the public URL of AgentStepPath.
	Destination string
	// Retries is Upstash-Retries for each message (DefaultRetries: QStash's).
	Retries int
}

// PublishTask publishes t to be delivered at notBefore or at once.
func (q Tasks) PublishTask(ctx context.Context, t agent.Task, notBefore time.Time) error {
	body, err := json.Marshal(t)
	if err != nil {
		return fmt.Errorf("qstash: encode task: %w", err)
	}
	_, err = q.Publisher.Publish(ctx, Message{
		Destination: q.Destination, Body: body, ContentType: "application/json",
		DeduplicationID: t.DedupKey(), Delay: max(time.Until(notBefore), 0), Retries: q.Retries,
	})
	return err
}

// TaskDeliverer turns a verified delivery into a call of the agent's
// step handler, for HandlerConfig.Deliver. A body that is not a task is
// refused for good (QStash would only deliver it again).
func TaskDeliverer(h agent.Handler) func(ctx context.Context, body []byte) error {
	return func(ctx context.Context, body []byte) error {
		var t agent.Task
		if err := json.Unmarshal(body, &t); err != nil {
			return Permanent(fmt.Errorf("qstash: the body is not an agent task: %w", err))
		}
		return h(ctx, t)
	}
}
