//go:build wine

package launcher

import _ "github.com/gopyk/gopyk/wine" // os.RemoveAll that works under wine 8
