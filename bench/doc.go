//go:build linux

// Command bench measures gopyk against its baselines on one test bed in one
// run (`make bench`, or `go run ./bench` from the repository root after
// `make build`), so that the ratios hold on a noisy machine: a real OpenSSH
// sshd on loopback (package testbed, with its own HOME for the remote user),
// Debian's ipykernel as the remote kernel spec python3, and jupyter_client's
// KernelManager starting kernels the way Jupyter does (launch.py, run with
// /usr/bin/python3).
//
// Baselines: the same kernel spec started locally without SSH, and OpenSSH's
// own `ssh -L` forwards to a kernel started by hand over ssh, with and
// without a session on the connection (sshd leaves Nagle on until a session
// starts), and sshpyk's path (an OpenSSH ControlMaster, `ssh -S … -O forward
// -L`) beside gopyk's round trip on loopback and at 100 ms RTT. A toxiproxy
// proxy in front of the sshd adds 50 ms each way for the 100 ms RTT figures. Series that are compared are interleaved (launches one
// by one, round trips in blocks of ten) so that drifting load hits them alike.
//
// It prints one markdown table and writes it to bench/results/ (not tracked;
// latest.md is the newest). Flags set the counts (-n launches per series,
// -rt round trips, -mb, -idle, -cycles, -scale), -only runs some sections,
// -sshd-config adds sshd_config lines (e.g. "MaxStartups 100"), and
// -baseline-bin DIR interleaves the cold and repeated launches of another
// build (e.g. main's, built into DIR) with this one's, for a before/after in
// one run (make bench BENCHFLAGS='-only launch -baseline-bin /tmp/old').
// The exit status is non-zero when a section could not be measured. Every process it
// starts is killed by PID; the sshd's Stop ends whatever its sessions left.
package main
