package billing_test

import (
	"context"
	"errors"
	"testing"

	"github.com/google/uuid"

	"github.com/parleyhq/parley/internal/billing"
	"github.com/parleyhq/parley/internal/plan"
)

// planNames is a Store's PlanName over a map; a missing user is free, as
// with no row.
type planNames map[uuid.UUID]string

func (m planNames) PlanName(_ context.Context, userID uuid.UUID) (string, error) {
	if name, ok := m[userID]; ok {
		if name == "down" {
			return "", errors.New("the database is down")
		}
		return name, nil
	}
	return plan.Free, nil
}

func TestPlans(t *testing.T) {
	t.Parallel()
	catalog := plan.Catalog{
		Anonymous: plan.Plan{Name: plan.Anonymous}, Free: plan.Plan{Name: plan.Free}, Pro: plan.Plan{Name: plan.Pro},
	}
	pro, free, down := uuid.New(), uuid.New(), uuid.New()
	plans := billing.Plans{Catalog: catalog, Store: planNames{pro: plan.Pro, free: plan.Free, down: "down"}}
	anonymous := plan.WithCaller(context.Background(), plan.Caller{Anonymous: true})
	tests := []struct {
		name    string
		ctx     context.Context
		user    uuid.UUID
		want    string
		wantErr bool
	}{
		{"Pro", context.Background(), pro, plan.Pro, false},
		{"Free", context.Background(), free, plan.Free, false},
		{"NoRowIsFree", context.Background(), uuid.New(), plan.Free, false},
		// Anonymous callers never reach the store, whatever it says.
		{"AnonymousStaysAnonymous", anonymous, pro, plan.Anonymous, false},
		{"ErrStore", context.Background(), down, "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := plans.PlanOf(tt.ctx, tt.user)
			if (err != nil) != tt.wantErr {
				t.Fatalf("PlanOf: %v, want error %t", err, tt.wantErr)
			}
			if got.Name != tt.want {
				t.Errorf("PlanOf = %q, want %q", got.Name, tt.want)
			}
		})
	}
}
