# gopyk — the two set-up commands are `make demo` and `make test`.
GO        ?= go
BIN       := bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -s -w -X github.com/gopyk/gopyk/manage.Version=$(VERSION) -X github.com/gopyk/gopyk/launcher.Version=$(VERSION)
PKGS      := ./...
FUZZTIME  ?= 5s
FUZZRUNS  ?= 10000
FUZZSEED  ?= 1
export PYDEVD_DISABLE_FILE_VALIDATION := 1

.PHONY: all build setup test test-windows unit fuzz fuzz-short cross demo bench clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/ ./cmd/gopyk ./cmd/gopyk-kernel

# Debian packages, the test user and /run/sshd (idempotent, quiet).
setup:
	@bash scripts/setup.sh

test: setup
	@echo "== gofmt"; out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	@echo "== go vet"; $(GO) vet $(PKGS)
	@echo "== go test -race"; $(GO) test -race -timeout 25m -count=1 $(PKGS)
	@$(MAKE) --no-print-directory fuzz-short
	@$(MAKE) --no-print-directory cross

# The Windows builds run under Debian's wine: the Windows tests of kernelspec,
# launcher and wsproxy (wine package), and ssh through `wine gopyk.exe
# ws-proxy` (e2e). `go test ./...` in `test` runs them too; this is the short way.
test-windows: setup
	@echo "== windows (wine)"; $(GO) test -count=1 ./wine/ && $(GO) test -count=1 -run 'Wine' ./e2e/

# Open-ended fuzzing, FUZZTIME of wall clock per target (the seeds and the
# committed corpus also run in every `go test`). A finding is written to the
# package's testdata/fuzz and fails the run; a failure that wrote nothing (Go's
# coordinator can report its own -fuzztime deadline, or a worker "hung" on a
# loaded machine) is shown and the target is run once more.
fuzz:
	@echo "== fuzz ($(FUZZTIME) each)"
	@log=$$(mktemp); cache=$$(mktemp -d); trap 'rm -rf $$log $$cache' EXIT; \
	for pkg in $$($(GO) list $(PKGS)); do \
	  for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz'); do \
	    echo "$$pkg $$f"; \
	    dir=$$($(GO) list -f '{{.Dir}}' $$pkg)/testdata/fuzz/$$f; \
	    before=$$(ls $$dir 2>/dev/null | wc -l); \
	    $(FUZZENV) $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $(FUZZFLAGS) $$pkg $(FUZZARGS) >$$log 2>&1 && continue; \
	    tail -40 $$log; \
	    [ "$$(ls $$dir 2>/dev/null | wc -l)" = "$$before" ] || { echo "fuzz: $$f found a failing input in $$dir"; exit 1; }; \
	    echo "fuzz: $$f failed without a finding; once more"; \
	    $(FUZZENV) $(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $(FUZZFLAGS) $$pkg $(FUZZARGS) >$$log 2>&1 || { tail -40 $$log; exit 1; }; \
	  done; \
	done

# What `make test` runs: the committed corpus, then FUZZRUNS inputs per target
# from a fixed mutator seed (GODEBUG=fuzzseed) in one worker. A count rather
# than a duration, so no wall-clock deadline races the coordinator, and the
# same inputs on every machine (a fresh cache corpus, not what earlier runs of
# `make fuzz` left in GOCACHE).
fuzz-short:
	@$(MAKE) --no-print-directory fuzz FUZZTIME=$(FUZZRUNS)x FUZZFLAGS='-parallel 1' \
	  FUZZENV='GODEBUG=fuzzseed=$(FUZZSEED)' FUZZARGS='-args -test.fuzzcachedir=$$$$cache'

# The local side must compile everywhere users run Jupyter.
cross:
	@echo "== cross"
	@for t in linux/amd64 linux/arm64 darwin/arm64 darwin/amd64 windows/amd64; do \
	  GOOS=$${t%/*} GOARCH=$${t#*/} $(GO) build -o /dev/null ./cmd/gopyk ./cmd/gopyk-kernel || { echo "cross: $$t failed"; exit 1; }; \
	  echo "  $$t ok"; \
	done
	@# macOS and Windows tests compile (Windows ones also run under wine, test-windows).
	@for os in darwin windows; do \
	  GOOS=$$os $(GO) vet ./... || { echo "cross: go vet for $$os failed"; exit 1; }; \
	  d=$$(mktemp -d); GOOS=$$os $(GO) test -c -o $$d/ $$(GOOS=$$os $(GO) list ./...) >/dev/null || { rm -rf $$d; echo "cross: go test -c for $$os failed"; exit 1; }; rm -rf $$d; \
	  echo "  $$os vet and test -c ok"; \
	done

# A throwaway sshd on loopback (run as you, no root), a kernel launched, used and shut down through it.
demo: build
	@bash scripts/setup.sh 2>/dev/null || true
	$(GO) run ./demo

bench: build
	$(GO) run ./bench $(BENCHFLAGS)

clean:
	rm -rf $(BIN)
