package app_test

import (
	"testing"

	"github.com/parleyhq/parley/internal/attachment"
	"github.com/parleyhq/parley/internal/config"
)

// TestAttachmentCeilings: configuration caps attachments at the ceilings
// the attachment rules and the request size limits are built on; config
// keeps its own copy because it imports no domain package.
func TestAttachmentCeilings(t *testing.T) {
	if config.AttachmentMaxCountCeiling != attachment.MaxCountCeiling || config.AttachmentMaxRequestBytes != attachment.MaxRequestBytes {
		t.Errorf("config's ceilings (%d files, %d bytes) differ from attachment's (%d, %d)",
			config.AttachmentMaxCountCeiling, config.AttachmentMaxRequestBytes, attachment.MaxCountCeiling, attachment.MaxRequestBytes)
	}
	// Same fields, same order (the conversion in app compiles only then),
	// and the same defaults.
	cfg, err := config.Load(func(string) string { return "" }, config.ModeDev)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := attachment.Limits(cfg.AttachmentLimits), attachment.DefaultLimits(); got != want {
		t.Errorf("config's default caps %+v, attachment's %+v", got, want)
	}
}
