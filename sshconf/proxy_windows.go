//go:build windows

package sshconf

import (
	"fmt"
	"io"
	"net"
	"time"
)

// startProxyCommand runs cmdline with pipes (Windows has no socketpair for
// child stdio); deadlines on the returned conn are no-ops, so the handshake
// timer closes it instead.
func startProxyCommand(cmdline string, echo io.Writer) (net.Conn, *proxyCommand, error) {
	p := &proxyCommand{cmdline: cmdline, tail: &tailBuffer{max: 2048, echo: echo}, exited: make(chan struct{})}
	p.cmd = proxyShell(cmdline)
	p.cmd.Stderr = p.tail
	p.cmd.WaitDelay = time.Second
	stdin, err := p.cmd.StdinPipe()
	if err != nil {
		return nil, nil, err
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		return nil, nil, err
	}
	if err := p.cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start ProxyCommand `%s`: %w", cmdline, err)
	}
	go func() {
		p.cmd.Wait()
		close(p.exited)
	}()
	return &pipeConn{r: stdout, w: stdin}, p, nil
}

func (p *proxyCommand) stop() {
	p.stopped.Do(func() {
		p.cmd.Process.Kill()
		select {
		case <-p.exited:
		case <-time.After(5 * time.Second):
		}
	})
}

type pipeConn struct {
	r io.ReadCloser
	w io.WriteCloser
}

func (c *pipeConn) Read(b []byte) (int, error)  { return c.r.Read(b) }
func (c *pipeConn) Write(b []byte) (int, error) { return c.w.Write(b) }
func (c *pipeConn) Close() error {
	c.w.Close()
	return c.r.Close()
}
func (c *pipeConn) LocalAddr() net.Addr                { return &net.TCPAddr{} }
func (c *pipeConn) RemoteAddr() net.Addr               { return &net.TCPAddr{} }
func (c *pipeConn) SetDeadline(t time.Time) error      { return nil }
func (c *pipeConn) SetReadDeadline(t time.Time) error  { return nil }
func (c *pipeConn) SetWriteDeadline(t time.Time) error { return nil }
