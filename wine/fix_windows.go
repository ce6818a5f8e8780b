//go:build wine

package wine

import (
	_ "unsafe" // go:linkname

	"golang.org/x/sys/windows"
)

// deleteatFallback is os.RemoveAll's switch to FileDispositionInfo, the
// deletion call wine 8 implements: its NtSetInformationFile answers
// FileDispositionInformationEx with STATUS_NOT_IMPLEMENTED, which Go does not
// take for "unsupported", so every t.TempDir cleanup would fail. Reaching it
// needs -ldflags=-checklinkname=0, hence the wine build tag.
//
//go:linkname deleteatFallback internal/syscall/windows.TestDeleteatFallback
var deleteatFallback bool

func init() {
	// Only under wine: its ntdll exports wine_get_version.
	if windows.NewLazySystemDLL("ntdll.dll").NewProc("wine_get_version").Find() == nil {
		deleteatFallback = true
	}
}
