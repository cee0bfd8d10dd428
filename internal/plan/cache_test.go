package plan_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/plan"
)

// counting answers from a table and counts the questions.
type counting struct {
	plans map[uuid.UUID]plan.Plan
	asked int
	err   error
}

func (c *counting) PlanOf(_ context.Context, id uuid.UUID) (plan.Plan, error) {
	c.asked++
	if c.err != nil {
		return plan.Plan{}, c.err
	}
	return c.plans[id], nil
}

func TestCache(t *testing.T) {
	user := uuid.New()
	next := &counting{plans: map[uuid.UUID]plan.Plan{user: {Name: plan.Free}}}
	c := plan.NewCache(next, time.Minute, 10)
	ctx := context.Background()
	for range 3 {
		if p, err := c.PlanOf(ctx, user); err != nil || p.Name != plan.Free {
			t.Fatalf("PlanOf = %v, %v", p, err)
		}
	}
	if next.asked != 1 {
		t.Errorf("asked %d times for three calls, want once", next.asked)
	}
	// A plan change, once told, applies at the next call.
	next.plans[user] = plan.Plan{Name: plan.Pro}
	c.Forget(user)
	if p, _ := c.PlanOf(ctx, user); p.Name != plan.Pro {
		t.Errorf("after Forget: %s, want pro", p.Name)
	}
	// Anonymous and signed-in callers of one id are kept apart.
	anon := plan.WithCaller(ctx, plan.Caller{Anonymous: true})
	c.PlanOf(anon, user)
	if next.asked != 3 {
		t.Errorf("asked %d times, want 3 (the anonymous caller is its own entry)", next.asked)
	}
	// Errors are not kept.
	other := uuid.New()
	next.err = errors.New("database down")
	if _, err := c.PlanOf(ctx, other); err == nil {
		t.Fatal("no error")
	}
	next.err = nil
	if _, err := c.PlanOf(ctx, other); err != nil {
		t.Errorf("after the database came back: %v", err)
	}
}

func TestCacheExpires(t *testing.T) {
	user := uuid.New()
	next := &counting{plans: map[uuid.UUID]plan.Plan{user: {Name: plan.Free}}}
	c := plan.NewCache(next, 20*time.Millisecond, 10)
	c.PlanOf(context.Background(), user)
	time.Sleep(30 * time.Millisecond)
	c.PlanOf(context.Background(), user)
	if next.asked != 2 {
		t.Errorf("asked %d times, want twice (the entry expired)", next.asked)
	}
}

// hooked answers with the plan in a table, running during() while the
// read is under way.
type hooked struct {
	plans  map[uuid.UUID]plan.Plan
	during func()
}

func (h *hooked) PlanOf(_ context.Context, id uuid.UUID) (plan.Plan, error) {
	p := h.plans[id]
	if h.during != nil {
		during := h.during
		h.during = nil
		during()
	}
	return p, nil
}

// TestCacheReadRacingForget: a read that was under way when the plan
// changed (and Forget came) does not keep what it read: the next call
// reads again and sees the change.
func TestCacheReadRacingForget(t *testing.T) {
	user := uuid.New()
	ctx := context.Background()
	for _, tt := range []struct {
		name   string
		forget func(*plan.Cache)
	}{
		{"Forget", func(c *plan.Cache) { c.Forget(user) }},
		{"ForgetAll", (*plan.Cache).ForgetAll},
	} {
		t.Run(tt.name, func(t *testing.T) {
			next := &hooked{plans: map[uuid.UUID]plan.Plan{user: {Name: plan.Free}}}
			c := plan.NewCache(next, time.Minute, 10)
			// The read has got the old plan; then the change commits and
			// its notification arrives, before the read stores its answer.
			next.during = func() {
				next.plans[user] = plan.Plan{Name: plan.Pro}
				tt.forget(c)
			}
			if p, _ := c.PlanOf(ctx, user); p.Name != plan.Free {
				t.Fatalf("the racing read: %s, want the free plan it read", p.Name)
			}
			if p, _ := c.PlanOf(ctx, user); p.Name != plan.Pro {
				t.Errorf("the next read: %s, want pro (the racing read's answer was kept)", p.Name)
			}
		})
	}
}

// TestCacheForgetAll: ForgetAll drops every user's entry.
func TestCacheForgetAll(t *testing.T) {
	a, b := uuid.New(), uuid.New()
	next := &counting{plans: map[uuid.UUID]plan.Plan{a: {Name: plan.Free}, b: {Name: plan.Free}}}
	c := plan.NewCache(next, time.Minute, 10)
	ctx := context.Background()
	c.PlanOf(ctx, a)
	c.PlanOf(ctx, b)
	next.plans[a], next.plans[b] = plan.Plan{Name: plan.Pro}, plan.Plan{Name: plan.Pro}
	c.ForgetAll()
	for _, id := range []uuid.UUID{a, b} {
		if p, _ := c.PlanOf(ctx, id); p.Name != plan.Pro {
			t.Errorf("after ForgetAll: %s, want pro", p.Name)
		}
	}
	if next.asked != 4 {
		t.Errorf("asked %d times, want 4", next.asked)
	}
}
