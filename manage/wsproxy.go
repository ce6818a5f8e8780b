package manage

import (
	"context"
	"time"

	"github.com/gopyk/gopyk/wsproxy"
	"github.com/urfave/cli/v3"
)

func (a *App) wsProxyCommand() *cli.Command {
	return &cli.Command{
		Name:  "ws-proxy",
		Usage: "ssh ProxyCommand: carry SSH over a WebSocket (JupyterHub jupyter-sshd-proxy, hosted notebooks)",
		UsageText: "gopyk ws-proxy [--token-file F | --token-env VAR] [--cookie-file F] [--header-file F] [--cacert F] URL\n\n" +
			"In ~/.ssh/config:  ProxyCommand gopyk ws-proxy --token-file ~/.jupyterhub-token wss://HUB/user/NAME/sshd/\n" +
			"Credentials are read from files or a variable, never from the command line (other users can read it).",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "token-file", Usage: "read the API token from `FILE`; sent as 'Authorization: token …'"},
			&cli.StringFlag{Name: "token-env", Usage: "read the API token from the environment variable `VAR`"},
			&cli.StringFlag{Name: "cookie-file", Usage: "send the cookies in `FILE` (name=value lines)"},
			&cli.StringFlag{Name: "header-file", Usage: "send the headers in `FILE` ('Name: value' lines)"},
			&cli.StringFlag{Name: "cacert", Usage: "trust the CA certificates in PEM `FILE` instead of the system ones"},
			&cli.BoolFlag{Name: "insecure", Usage: "do not verify the server's TLS certificate"},
			&cli.DurationFlag{Name: "ping-interval", Value: wsproxy.DefaultPingInterval, Usage: "send a WebSocket ping this often so idle proxies keep the connection (0 disables)"},
			&cli.DurationFlag{Name: "connect-timeout", Value: wsproxy.DefaultConnectTimeout, Usage: "give up if the WebSocket is not open after this long"},
		},
		Action: a.runWSProxy,
	}
}

func (a *App) runWSProxy(ctx context.Context, cmd *cli.Command) error {
	if cmd.NArg() != 1 {
		return usagef("give exactly one URL, e.g. wss://HUB/user/NAME/sshd/ (see 'gopyk ws-proxy --help')")
	}
	ping := cmd.Duration("ping-interval")
	if ping == 0 {
		ping = -1 // the flag's 0 means off; wsproxy's 0 means default
	}
	opts := wsproxy.Options{
		URL:            cmd.Args().First(),
		TokenFile:      cmd.String("token-file"),
		TokenEnv:       cmd.String("token-env"),
		CookieFile:     cmd.String("cookie-file"),
		HeaderFile:     cmd.String("header-file"),
		CACert:         cmd.String("cacert"),
		Insecure:       cmd.Bool("insecure"),
		PingInterval:   ping,
		ConnectTimeout: cmd.Duration("connect-timeout"),
		Log:            a.log,
	}
	if opts.ConnectTimeout <= 0 {
		return usagef("--connect-timeout must be positive, e.g. 15s")
	}
	if opts.PingInterval > 0 && opts.PingInterval < time.Second {
		return usagef("--ping-interval below 1s would flood the server; use e.g. 30s, or 0 to disable")
	}
	if wsproxy.URLHasCredentials(opts.URL) {
		a.warn("the URL carries a credential, which every local user can read in the process list; put it in a file and use --token-file, --cookie-file or --header-file")
	}
	return wsproxy.Run(ctx, opts, a.Stdin, a.Stdout)
}
