package launcher

import (
	"errors"
	"os"
)

// menuAvailable: a Windows console has no Ctrl+D end of file to catch (Ctrl+D
// is a character there, Ctrl+Z then Enter the end of file), so the launcher
// runs without the menu; menuHint says what to press instead.
const menuAvailable = false

// ttyReader is never used on Windows (menuAvailable is false).
type ttyReader struct{}

func newTTYReader(*os.File) (*ttyReader, error) { return nil, errors.New(menuHint) }

func (*ttyReader) Read([]byte) (int, error) { return 0, errors.New(menuHint) }
func (*ttyReader) Close() error             { return nil }
func (*ttyReader) release()                 {}
