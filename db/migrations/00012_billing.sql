-- +goose Up
-- Billing: each user's subscription as Stripe last told it, and the Stripe
-- events already handled. Plans are read from here on every request (see
-- billing.Plans), so a plan change applies at once on every instance.
CREATE TABLE parley.subscriptions (
    user_id                uuid        PRIMARY KEY,
    -- What the user may use now: 'free' or 'pro'. It stays 'pro' while
    -- Stripe retries a failed payment (status past_due), and falls back to
    -- 'free' once the subscription is canceled, unpaid or never completed.
    plan                   text        NOT NULL DEFAULT 'free' CHECK (plan IN ('free', 'pro')),
    -- Stripe's subscription status ('' before the first subscription).
    status                 text        NOT NULL DEFAULT '',
    -- The user's Stripe customer, created once, on their first checkout.
    stripe_customer_id     text        UNIQUE,
    stripe_subscription_id text,
    current_period_end     timestamptz,
    cancel_at_period_end   boolean     NOT NULL DEFAULT false,
    -- When the first payment failure of the current period was reported;
    -- cleared when the subscription is active again.
    past_due_since         timestamptz,
    -- The creation time of the Stripe event the row reflects: an event
    -- older than this changes nothing, so events delivered out of order
    -- never roll a subscription back.
    state_time             timestamptz,
    update_time            timestamptz NOT NULL DEFAULT now()
);

-- Stripe event ids already handled: an event's id is inserted in the
-- transaction that applies it, so a redelivery applies nothing.
CREATE TABLE parley.stripe_events (
    id            text        PRIMARY KEY,
    type          text        NOT NULL,
    received_time timestamptz NOT NULL DEFAULT now()
);

ALTER TABLE parley.subscriptions ENABLE ROW LEVEL SECURITY;
ALTER TABLE parley.stripe_events ENABLE ROW LEVEL SECURITY;

GRANT SELECT, INSERT, UPDATE, DELETE ON parley.subscriptions TO parley_app;
GRANT SELECT, INSERT ON parley.stripe_events TO parley_app;
CREATE POLICY parley_app_all ON parley.subscriptions FOR ALL TO parley_app USING (true) WITH CHECK (true);
CREATE POLICY parley_app_all ON parley.stripe_events FOR ALL TO parley_app USING (true) WITH CHECK (true);

-- +goose Down
DROP TABLE parley.stripe_events;
DROP TABLE parley.subscriptions;
