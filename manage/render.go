package manage

import (
	"fmt"
	"io"
	"strconv"
	"strings"
)

// ANSI colours as sshpyk uses them; reset is "default foreground".
const (
	green   = "\033[32m"
	red     = "\033[31m"
	orange  = "\033[33m"
	grey    = "\033[90m"
	cyan    = "\033[36m"
	magenta = "\033[35m"
	reset   = "\033[39m"
)

// labelWidth is sshpyk's: the width of "Remote Interrupt Mode:".
const labelWidth = 22

// subIndent is where the lines under "SSH Host Alias:" start.
var subIndent = strings.Repeat(" ", labelWidth+4)

type printer struct {
	w     io.Writer
	color bool
	label string // colour of labels in the current block
}

func newPrinter(w io.Writer, color bool) *printer { return &printer{w: w, color: color} }

func (p *printer) paint(c, s string) string {
	if !p.color {
		return s
	}
	return c + s + reset
}

func (p *printer) marker(st Status) string {
	switch st {
	case StatusOK:
		return p.paint(green, "(v)")
	case StatusError:
		return p.paint(red, "(x)")
	case StatusWarning:
		return p.paint(orange, "(!)")
	case StatusInfo:
		return "(i)"
	default:
		return p.paint(grey, "(?)")
	}
}

func (p *printer) line(label, value string) {
	fmt.Fprintf(p.w, "%s %s\n", p.paint(p.label, fmt.Sprintf("%-*s", labelWidth, label+":")), value)
}

func (p *printer) check(label string, c Check) {
	p.line(label, p.marker(c.Status)+" "+c.Message)
}

func (p *printer) sub(c Check) {
	fmt.Fprintf(p.w, "%s%s %s: %s\n", subIndent, p.marker(c.Status), c.Key, c.Message)
}

func (p *printer) print(rep listReport) {
	if len(rep.Kernels) == 0 {
		fmt.Fprintln(p.w, "No kernels available")
		return
	}
	for _, k := range rep.Kernels {
		if k.SSH == nil {
			p.local(k)
		} else {
			p.ssh(k)
		}
		fmt.Fprintln(p.w)
	}
}

func (p *printer) local(k kernelReport) {
	p.label = magenta
	fmt.Fprintln(p.w, p.paint(magenta, "---- Local Kernel ----"))
	p.line("Name", k.Name)
	p.line("Display Name", k.DisplayName)
	p.line("Resource Dir", k.ResourceDir)
	p.line("Command", strings.Join(k.Argv, " "))
	p.line("Language", k.Language)
	p.line("Interrupt Mode", k.InterruptMode)
}

func (p *printer) ssh(k kernelReport) {
	s := k.SSH
	p.label = cyan
	fmt.Fprintln(p.w, p.paint(cyan, "----- SSH Kernel -----"))
	p.line("Name", k.Name)
	p.line("Display Name", k.DisplayName)
	p.line("Kernel spec", k.SpecFile)
	p.line("Command (simplified)", s.Command)
	p.line("Language", k.Language)
	launcher := s.Launcher
	if launcher == "slurm" {
		launcher += ": sbatch " + s.Settings.LauncherArgs + " (on a compute node)"
	}
	p.line("Launcher", strings.TrimSpace(launcher))
	p.check("Interrupt Mode", s.InterruptMode)
	if s.SSHConfig != nil {
		p.check("SSH Config File", *s.SSHConfig)
	}
	if s.SSHClient != nil {
		p.check("SSH Client", *s.SSHClient)
	}
	if s.RouteError != nil {
		p.line("SSH Host Alias", s.RouteError.Key)
		p.sub(Check{Key: "error", Status: s.RouteError.Status, Message: s.RouteError.Message})
	}
	// The target first, then its jump hosts in the order they are dialled.
	if n := len(s.Route); n > 0 {
		p.host(s.Route[n-1], "")
		for i, h := range s.Route[:n-1] {
			p.host(h, " (jump "+strconv.Itoa(i+1)+" of "+strconv.Itoa(n-1)+")")
		}
	}
	for _, c := range s.Remote {
		p.check(c.Label, c)
	}
	for _, st := range s.LaunchSteps {
		p.check("Launch "+strings.ToUpper(st.Step[:1])+st.Step[1:], Check{Status: st.Status, Message: fmt.Sprintf("%.3f s: %s", st.Seconds, st.Message)})
	}
	if s.Launch != nil {
		p.check("Launch", *s.Launch)
	}
	p.line("Launch Timeout", strconv.Itoa(s.LaunchTimeout)+" s")
	p.line("Shutdown Timeout", strconv.Itoa(s.ShutdownTimeout)+" s")
	if s.QueueTimeout > 0 {
		p.line("Queue Timeout", strconv.Itoa(s.QueueTimeout)+" s")
	}
	if s.Settings.Grace > 0 {
		p.line("Grace", strconv.Itoa(s.Grace)+" s")
	}
	if s.Settings.ReconnectTimeout > 0 {
		p.line("Reconnect Timeout", strconv.Itoa(s.ReconnectTimeout)+" s")
	}
	if s.Settings.Streams != "" {
		p.line("Streams", s.Settings.Streams)
	}
	if s.Settings.LinkTimeout > 0 {
		p.line("Link Timeout", strconv.Itoa(s.Settings.LinkTimeout)+" s")
	}
	if s.Settings.Master != "" {
		p.line("Master", s.Settings.Master)
	}
	if s.Settings.MasterPersist > 0 {
		p.line("Master Persist", strconv.Itoa(s.Settings.MasterPersist)+" s")
	}
	if s.Settings.ConnectionNotices != "" {
		p.line("Connection Notices", s.Settings.ConnectionNotices)
	}
	if s.Settings.IOPubBacklog > 0 {
		p.line("IOPub Backlog", strconv.Itoa(s.Settings.IOPubBacklog)+" MiB")
	}
}

func (p *printer) host(h hostReport, suffix string) {
	p.line("SSH Host Alias", h.Alias+suffix)
	for _, c := range h.Checks {
		p.sub(c)
	}
}
