"""websockify auth plugins for gopyk's tests (load with PYTHONPATH=<this dir>).

The secret is read from the file named by --auth-source, so it never appears
on websockify's command line.

  --auth-plugin gpkauth.Token  --auth-source FILE   'Authorization: token|bearer <secret>'
  --auth-plugin gpkauth.Cookie --auth-source FILE   'Cookie: gpk-session=<secret>'
"""
import hmac
import re
from http.cookies import SimpleCookie

from websockify.auth_plugins import AuthenticationError


def _secret(path):
    with open(path) as f:
        return f.read().strip()


class Token:
    """Like jupyter_server: Authorization: (token|bearer) <secret>."""

    def __init__(self, src=None):
        self.secret = _secret(src)

    def authenticate(self, headers, target_host, target_port):
        m = re.match(r"(token|bearer)\s+(.+)", headers.get("Authorization", ""), re.IGNORECASE)
        if not m or not hmac.compare_digest(m.group(2).strip(), self.secret):
            raise AuthenticationError(response_code=403 if m else 401, response_msg="bad token")


class Cookie:
    """Like cookie-authenticated notebook platforms: a pre-shared session cookie."""

    def __init__(self, src=None):
        self.secret = _secret(src)

    def authenticate(self, headers, target_host, target_port):
        c = SimpleCookie()
        c.load(headers.get("Cookie", ""))
        got = c["gpk-session"].value if "gpk-session" in c else ""
        if not hmac.compare_digest(got, self.secret):
            raise AuthenticationError(response_code=403, response_msg="bad cookie")
