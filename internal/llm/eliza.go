package llm

import (
	"fmt"
	"hash/fnv"
	"regexp"
	"strings"
	"sync"
)

// elizaRule answers messages matching pattern; a "%s" in a response is
// replaced by the pattern's first group, seen from the other side ("my job"
// becomes "your job").
type elizaRule struct {
	pattern   *regexp.Regexp
	responses []string
}

// elizaRules are tried in order; the first match answers. The catch-all at
// the end guarantees one does. They compile on the first offline answer,
// not at every start of a binary that serves a real model.
var elizaRules = sync.OnceValue(func() []elizaRule {
	return []elizaRule{
		rule(`^(?:hello|hi|hey|good (?:morning|afternoon|evening))\b`,
			"Hello! I'm Parley's offline assistant, so I can chat but I don't know much. What's on your mind?",
			"Hi there. I'm running offline, without a real model. How are you feeling today?",
		),
		rule(`\b(?:bye|goodbye|see you)\b`,
			"Goodbye. It was nice talking to you.",
			"Take care! Come back whenever you want to talk.",
		),
		rule(`\b(?:thanks|thank you)\b`,
			"You're welcome. Is there anything else on your mind?",
			"Glad I could help. What else would you like to talk about?",
		),
		rule(`\bsorry\b`,
			"There's no need to apologize. What were you thinking about?",
			"Apologies aren't necessary. Tell me more.",
		),
		rule(`\bi need (.+)`,
			"Why do you need %s?",
			"Would it really help you to get %s?",
			"Are you sure you need %s?",
		),
		rule(`\bi(?: am|'m) (.+)`,
			"How long have you been %s?",
			"Why do you think you are %s?",
			"How do you feel about being %s?",
		),
		rule(`\bi feel (.+)`,
			"Tell me more about feeling %s.",
			"Do you often feel %s?",
			"When do you usually feel %s?",
		),
		rule(`\bi (?:want|would like) (.+)`,
			"What would it mean to you if you got %s?",
			"Why do you want %s?",
		),
		rule(`\bbecause (.+)`,
			"Is that the real reason?",
			"What other reasons come to mind besides %s?",
		),
		rule(`\bcan you (.+?)\??$`,
			"What makes you think I can't %s?",
			"If I could %s, what would you do next?",
		),
		rule(`\bmy ([\w'-]+)`, // one word: "your sister", not "your sister visits tomorrow"
			"Tell me more about your %s.",
			"Why does your %s matter to you?",
		),
		rule(`\byou are (.+)`,
			"Why do you think I am %s?",
			"Does it please you to think that I am %s?",
		),
		rule(`^(?:yes|yeah|yep)\b`,
			"You seem quite sure. Why is that?",
			"I see. Go on.",
		),
		rule(`^(?:no|nope|not really)\b`,
			"Why not?",
			"Are you saying no just to be negative?",
		),
		rule(`\?$`,
			"Why do you ask?",
			"What do you think the answer is?",
			"That's a good question. What would you guess?",
		),
		rule(`(.+)`,
			"Please tell me more.",
			"I see. And what does that suggest to you?",
			"How does \"%s\" make you feel?",
			"Let's explore that. Why do you say %s?",
		),
	}
})

func rule(pattern string, responses ...string) elizaRule {
	return elizaRule{pattern: regexp.MustCompile(`(?i)` + pattern), responses: responses}
}

// elizaReflections turn the user's words into the speaker's: "I am sad"
// comes back as "you are sad".
var elizaReflections = map[string]string{
	"i": "you", "me": "you", "my": "your", "mine": "yours", "myself": "yourself",
	"am": "are", "was": "were", "i'm": "you're", "i've": "you've", "i'll": "you'll", "i'd": "you'd",
	"you": "I", "your": "my", "yours": "mine", "yourself": "myself",
	"you're": "I'm", "you've": "I've", "you'll": "I'll", "are": "am",
}

// elizaAnswer replies to one message. It picks among a rule's responses by a
// hash of the message rather than at random, so the same message always gets
// the same answer and different messages usually get different ones.
func elizaAnswer(message string) string {
	text := strings.Join(strings.Fields(message), " ")
	if text == "" {
		return "Hello! I'm Parley's offline assistant. What would you like to talk about?"
	}
	h := fnv.New32a()
	h.Write([]byte(strings.ToLower(text)))
	pick := int(h.Sum32() % 1024)
	for _, r := range elizaRules() {
		m := r.pattern.FindStringSubmatch(text)
		if m == nil {
			continue
		}
		response := r.responses[pick%len(r.responses)]
		if !strings.Contains(response, "%s") {
			return response
		}
		return fmt.Sprintf(response, reflect(m[len(m)-1]))
	}
	return "Please tell me more." // unreachable: the last rule matches anything
}

// reflect swaps first and second person and drops trailing punctuation, so a
// captured phrase reads naturally inside a response.
func reflect(phrase string) string {
	phrase = strings.TrimRight(phrase, ".!?,;: ")
	words := strings.Fields(phrase)
	for i, w := range words {
		if r, ok := elizaReflections[strings.ToLower(w)]; ok {
			words[i] = r
		}
	}
	if len(words) > 12 { // keep echoes short; long quotes read as parroting
		words = append(words[:12], "…")
	}
	return strings.Join(words, " ")
}
