package chat

import (
	"slices"

	"github.com/parleyhq/parley/internal/apperr"
	"github.com/parleyhq/parley/internal/llm"
)

// Models is the catalog of models the server offers and the provider that
// serves each.
type Models struct {
	defaultModel string
	providers    map[string]llm.Provider
	names        []string
}

// NewModels returns a catalog whose default is the first model added.
func NewModels() *Models { return &Models{providers: map[string]llm.Provider{}} }

// Add offers names through p.
func (m *Models) Add(p llm.Provider, names ...string) *Models {
	for _, n := range names {
		if m.defaultModel == "" {
			m.defaultModel = n
		}
		if _, ok := m.providers[n]; !ok {
			m.names = append(m.names, n)
		}
		m.providers[n] = p
	}
	return m
}

// Default is the model used when neither request nor conversation names one.
func (m *Models) Default() string { return m.defaultModel }

// Names lists the offered models, the default first.
func (m *Models) Names() []string { return slices.Clone(m.names) }

// Has reports whether name is offered.
func (m *Models) Has(name string) bool { _, ok := m.providers[name]; return ok }

// resolve picks the first non-empty of the names, or the default, and its
// provider. It returns apperr Invalid naming field for an unknown model.
func (m *Models) resolve(field string, names ...string) (string, llm.Provider, error) {
	name := m.defaultModel
	for _, n := range names {
		if n != "" {
			name = n
			break
		}
	}
	p, ok := m.providers[name]
	if !ok {
		return "", nil, apperr.InvalidField(field, "%q is not a model this server offers (offered: %v)", name, m.names)
	}
	return name, p, nil
}
