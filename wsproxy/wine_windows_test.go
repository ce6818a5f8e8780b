//go:build wine

package wsproxy

import _ "github.com/gopyk/gopyk/wine" // os.RemoveAll that works under wine 8
