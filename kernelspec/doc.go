// Package kernelspec finds, reads and writes Jupyter kernel specs (kernel.json)
// exactly where and how jupyter_core and jupyter_client look for them, and holds
// the gopyk settings a spec carries under metadata.gopyk.
package kernelspec
