package wsproxy

import "errors"

// Kinds of failure, for callers that pace retries by cause; test with
// errors.Is(err, wsproxy.ErrServerNotRunning). A stopped server or rejected
// credentials will not change by retrying within seconds, a network blip may.
var (
	// ErrServerNotRunning: the Hub answered for a server that is stopped
	// (a redirect to /hub/…, or the Hub's own words after following it).
	ErrServerNotRunning = errors.New("the notebook server is not running")
	// ErrServerStarting: the Hub says the server is being started.
	ErrServerStarting = errors.New("the notebook server is starting")
	// ErrNoEndpoint: a server answered, but the URL is no WebSocket
	// endpoint on it (a wrong path, or jupyter-sshd-proxy not installed).
	ErrNoEndpoint = errors.New("no such WebSocket endpoint")
	// ErrAuthRejected: 401/403, or a redirect to a login page.
	ErrAuthRejected = errors.New("the credentials were rejected")
	// ErrServerGone: an open WebSocket was ended by the server side (a
	// close frame, or a proxy's HTTP error in place of frames).
	ErrServerGone = errors.New("the WebSocket server went away")
	// ErrConnectionLost: the connection broke without a word from the server.
	ErrConnectionLost = errors.New("the WebSocket connection was lost")
)

// Error is a failed dial or a connection that ended: "ws-proxy URL: what
// happened; what to do". URL has its query values hidden.
type Error struct {
	URL    string
	Kind   error // one of the Err* kinds above, or nil
	Status int   // the HTTP status of a refused upgrade, or 0
	Msg    string
	Err    error // the library's error, if any
}

func (e *Error) Error() string { return "ws-proxy " + e.URL + ": " + e.Msg }

func (e *Error) Unwrap() error { return e.Err }

// Is matches the error's kind, so callers need not know the wording.
func (e *Error) Is(target error) bool { return e.Kind != nil && target == e.Kind }
