// Package archtest holds tests of the codebase's shape rather than its
// behaviour: which packages may import which. It has no code of its own.
package archtest
