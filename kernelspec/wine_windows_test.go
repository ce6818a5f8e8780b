//go:build wine

package kernelspec

import _ "github.com/gopyk/gopyk/wine" // os.RemoveAll that works under wine 8
