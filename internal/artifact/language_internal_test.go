package artifact

import (
	"regexp"
	"testing"
)

// languageRE is what validLanguage replaces.
var languageRE = regexp.MustCompile(`^[A-Za-z0-9+#._-]+$`)

// FuzzValidLanguage: validLanguage accepts exactly what the regular
// expression it replaced matches.
func FuzzValidLanguage(f *testing.F) {
	for _, s := range []string{"", "go", "c++", "C#", "objective-c", "py3.12", "f_sharp", "go lang", "é", "go\n", "a/b", "\x00"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if got, want := validLanguage(s), languageRE.MatchString(s); got != want {
			t.Errorf("validLanguage(%q) = %v, the regexp says %v", s, got, want)
		}
	})
}
