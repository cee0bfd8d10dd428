-- Subscriptions (one row per user who ever started a checkout) and the
-- Stripe events already handled.

-- name: GetPlan :one
-- The plan the user is on now; no row means free. Read on every request
-- (the rate limiter's plan), so it is one primary-key lookup.
SELECT plan FROM parley.subscriptions WHERE user_id = sqlc.arg('user_id');

-- name: GetSubscription :one
SELECT * FROM parley.subscriptions WHERE user_id = sqlc.arg('user_id');

-- name: SaveCustomer :one
-- Remembers the user's Stripe customer unless one is remembered already,
-- and returns the one remembered: of two checkouts racing to create the
-- customer, both end up using the first saved.
INSERT INTO parley.subscriptions (user_id, stripe_customer_id)
VALUES (sqlc.arg('user_id'), sqlc.arg('stripe_customer_id'))
ON CONFLICT (user_id) DO UPDATE
    SET stripe_customer_id = coalesce(parley.subscriptions.stripe_customer_id, EXCLUDED.stripe_customer_id),
        update_time = CASE WHEN parley.subscriptions.stripe_customer_id IS NULL THEN now() ELSE parley.subscriptions.update_time END
RETURNING stripe_customer_id::text;

-- name: InsertStripeEvent :execrows
-- Records an event as handled; 0 rows means it was handled before.
INSERT INTO parley.stripe_events (id, type) VALUES (sqlc.arg('id'), sqlc.arg('type'))
ON CONFLICT (id) DO NOTHING;

-- name: LinkCustomer :execrows
-- A completed checkout: the customer named by the session is the user's
-- (checkout's client_reference_id), and so is its subscription, unless a
-- newer event already said otherwise.
-- A customer already another user's is not linked (a client_reference_id
-- that does not match its customer is not a checkout this service made).
INSERT INTO parley.subscriptions (user_id, stripe_customer_id, stripe_subscription_id)
SELECT sqlc.arg('user_id'), sqlc.arg('stripe_customer_id'), sqlc.narg('stripe_subscription_id')
WHERE NOT EXISTS (
    SELECT 1 FROM parley.subscriptions o
    WHERE o.stripe_customer_id = sqlc.arg('stripe_customer_id') AND o.user_id <> sqlc.arg('user_id'))
ON CONFLICT (user_id) DO UPDATE
    SET stripe_customer_id = coalesce(parley.subscriptions.stripe_customer_id, EXCLUDED.stripe_customer_id),
        stripe_subscription_id = coalesce(parley.subscriptions.stripe_subscription_id, EXCLUDED.stripe_subscription_id),
        update_time = now()
    WHERE parley.subscriptions.stripe_customer_id IS NULL
       OR parley.subscriptions.stripe_customer_id = EXCLUDED.stripe_customer_id;

-- name: ApplySubscription :execrows
-- Sets the customer's subscription to what an event says, unless the row
-- already reflects a newer event, or the same moment with the
-- subscription canceled (a canceled subscription never comes back; its
-- user subscribes again with a new one).
UPDATE parley.subscriptions s
SET plan = sqlc.arg('plan'),
    status = sqlc.arg('status'),
    stripe_subscription_id = sqlc.arg('stripe_subscription_id'),
    current_period_end = sqlc.narg('current_period_end'),
    cancel_at_period_end = sqlc.arg('cancel_at_period_end'),
    past_due_since = CASE
        WHEN sqlc.arg('status')::text = 'past_due' THEN coalesce(s.past_due_since, sqlc.arg('state_time')::timestamptz)
        ELSE NULL END,
    state_time = sqlc.arg('state_time'),
    update_time = now()
WHERE s.stripe_customer_id = sqlc.arg('stripe_customer_id')
  AND (s.state_time IS NULL
       OR s.state_time < sqlc.arg('state_time')
       OR (s.state_time = sqlc.arg('state_time')
           AND NOT (s.status = 'canceled' AND s.stripe_subscription_id = sqlc.arg('stripe_subscription_id'))));

-- name: MarkPastDue :execrows
-- A failed payment of the customer's subscription: it is past due from
-- now (the plan stays while Stripe retries), unless a newer event already
-- settled it.
UPDATE parley.subscriptions s
SET status = 'past_due',
    past_due_since = coalesce(s.past_due_since, sqlc.arg('event_time')::timestamptz),
    state_time = sqlc.arg('event_time'),
    update_time = now()
WHERE s.stripe_customer_id = sqlc.arg('stripe_customer_id')
  AND s.stripe_subscription_id = sqlc.arg('stripe_subscription_id')
  AND s.status IN ('active', 'trialing', 'past_due')
  AND (s.state_time IS NULL OR s.state_time < sqlc.arg('event_time'));

-- name: NotifyPlanOfCustomer :exec
-- Tells every instance (at commit) that the plan of the customer's user
-- may have changed, so their plan caches forget it.
SELECT pg_notify('parley_agent', 'p:' || user_id::text) FROM parley.subscriptions
WHERE stripe_customer_id = @stripe_customer_id;
