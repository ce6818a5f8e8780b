// Command bench measures gopyk against its baselines on one test bed in one
// run (`make bench`, or `go run ./bench`), so that the ratios hold on a noisy
// machine: a real OpenSSH sshd on loopback (package testbed), Debian's
// ipykernel as the remote kernel, and jupyter_client's KernelManager starting
// kernels the way Jupyter does.
//
// Baselines: the same kernel spec (python3) started locally without SSH, and
// OpenSSH's own `ssh -L` forwards to a kernel started by hand over ssh, with
// and without a session on the connection (sshd leaves Nagle on until a
// session starts). A toxiproxy proxy in front of the sshd adds 50 ms each way
// for the 100 ms RTT figures.
//
// It prints one markdown table and writes it to bench/results/ (not tracked).
// Every process it starts is killed by PID; the sshd's Stop ends whatever its
// sessions left behind.
package main
