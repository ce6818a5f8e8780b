// Package manage is the `gopyk` command: list, add, edit and delete kernel specs,
// and diagnose a spec end to end.
package manage
