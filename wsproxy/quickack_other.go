//go:build !linux

package wsproxy

import "net"

// quickAck is Linux's TCP_QUICKACK; elsewhere the connection is used as is.
func quickAck(c net.Conn) net.Conn { return c }
