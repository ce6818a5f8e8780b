package launcher

import (
	"errors"
	"os"
)

// ttyReader is not available on Windows: a console has no Ctrl+D end of
// file to catch, so the launcher runs without the menu there.
type ttyReader struct{}

func newTTYReader(*os.File) (*ttyReader, error) {
	return nil, errors.New("the Ctrl+D menu is not available on Windows; use Ctrl+C to interrupt and close the window to shut down")
}

func (*ttyReader) Read([]byte) (int, error) { return 0, errors.New("no terminal reader on Windows") }
func (*ttyReader) Close() error             { return nil }
func (*ttyReader) release()                 {}
