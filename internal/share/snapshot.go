package share

import "github.com/parleyhq/parley/internal/chat"

// Bounds of a snapshot: it is stored whole and sent in one answer.
const (
	MaxMessages      = 1000
	MaxSnapshotBytes = 8 << 20
)

// build turns the active branch into a snapshot, by these rules:
//   - the title, and the system prompt only when includeSystemPrompt;
//   - the user's and the assistant's messages, system messages only when
//     includeSystemPrompt; answers still streaming are left out (what a
//     reader sees is final);
//   - per message its role, text, model and time, and the artifact
//     versions its tool calls saved: never an id of the owner, the
//     conversation or a message, and never a tool's arguments or results.
//
// It returns the versions to show in full, in order of first mention.
func build(conv chat.Conversation, branch []chat.Message, includeSystemPrompt bool) (Snapshot, []VersionKey) {
	snap := Snapshot{Title: conv.Title, Messages: []Message{}, Artifacts: []Artifact{}}
	if includeSystemPrompt {
		snap.SystemPrompt = conv.SystemPrompt
	}
	var keys []VersionKey
	seen := map[VersionKey]bool{}
	for _, m := range branch {
		switch {
		case !m.Ended():
			continue
		case m.Role == chat.RoleSystem && !includeSystemPrompt:
			continue
		case m.Role != chat.RoleUser && m.Role != chat.RoleAssistant && m.Role != chat.RoleSystem:
			continue
		}
		out := Message{Role: m.Role, Content: m.Content, Model: m.Model, CreateTime: m.CreateTime}
		for _, round := range m.ToolRounds {
			for _, call := range round.Calls {
				if call.IsError || call.Artifact == nil {
					continue
				}
				a := call.Artifact
				key := VersionKey{ID: a.ID, Version: a.Version}
				out.Artifacts = append(out.Artifacts, ArtifactRef{ID: a.ID, Version: a.Version, Title: a.Title, Kind: a.Kind})
				if !seen[key] {
					seen[key] = true
					keys = append(keys, key)
				}
			}
		}
		snap.Messages = append(snap.Messages, out)
	}
	return snap, keys
}

// attach puts the versions found, in keys' order, into the snapshot, and
// drops the messages' references to versions that are gone (an artifact
// deleted since its answer).
func attach(snap *Snapshot, keys []VersionKey, found []Artifact) {
	byKey := make(map[VersionKey]Artifact, len(found))
	for _, a := range found {
		byKey[VersionKey{ID: a.ID, Version: a.Version}] = a
	}
	for _, k := range keys {
		if a, ok := byKey[k]; ok {
			snap.Artifacts = append(snap.Artifacts, a)
		}
	}
	for i := range snap.Messages {
		refs := snap.Messages[i].Artifacts[:0]
		for _, r := range snap.Messages[i].Artifacts {
			if _, ok := byKey[VersionKey{ID: r.ID, Version: r.Version}]; ok {
				refs = append(refs, r)
			}
		}
		if len(refs) == 0 {
			refs = nil
		}
		snap.Messages[i].Artifacts = refs
	}
}

// size is the snapshot's text in bytes, what its bound counts.
func (s Snapshot) size() int {
	n := len(s.Title) + len(s.SystemPrompt)
	for _, m := range s.Messages {
		n += len(m.Content)
	}
	for _, a := range s.Artifacts {
		n += len(a.Content)
	}
	return n
}
