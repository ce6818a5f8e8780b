package master

import (
	"errors"
	"log/slog"
	"time"
)

// Options say how Ensure may start a master.
type Options struct {
	Alias     string
	Persist   time.Duration // how long it stays once unused; < 0 until stopped
	DeadAfter time.Duration
	// Interactive lets the new master's first dial ask on this process's
	// terminal (its stderr), as sshconf.Dial would.
	Interactive bool
	// Exe is the program to run as the master (default: this one, when
	// it is gopyk or gopyk-kernel).
	Exe string
	Log *slog.Logger
	// LogLevel of the master's log (beside its socket): debug when its
	// starter logs at debug.
	LogLevel slog.Level
}

// ErrNoMaster: nothing answers at a socket.
var ErrNoMaster = errors.New("no master is running")

// Info is what `gopyk connect --status` shows of a master (JSON, by the
// muxGopykStatus request).
type Info struct {
	PID       int       `json:"pid"`
	Alias     string    `json:"alias"`
	Target    string    `json:"target"` // user@host:port, and the jump hosts
	Socket    string    `json:"socket"`
	Started   time.Time `json:"started"`
	Persist   float64   `json:"persist_seconds"` // < 0: forever
	Connected bool      `json:"connected"`
	Since     time.Time `json:"since,omitzero"`       // connected since
	Dials     int       `json:"dials"`                // connections made, the first included
	Users     int       `json:"users"`                // control connections and relays in use
	Sessions  int       `json:"sessions"`             // session channels open on the connection
	IdleFor   float64   `json:"idle_seconds"`         // 0 while used
	LastError string    `json:"last_error,omitempty"` // why it is not connected
	ErrorKind string    `json:"error_kind,omitempty"`
}
