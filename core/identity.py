"""Who is using the app, and what they may do: the identity and policy every tab shares.

Why it exists: feedback (likes, saved items, tag edits) belongs to one person, and heavy work (catalog
builds, retrains, accepting tag edits into training) is an administrator's decision. Both rules must be
the same on every page, so they live here, free of any UI import; the UI passes in what it knows (the
login's claims, the ``[recs]`` settings, the address the server listens on).

Profile keys (what the database stores in ``profiles.name``) come in two reserved namespaces:

- ``oidc:<40 hex>``: a logged-in person, a hash of the issuer and subject (case kept). The e-mail is never
  the key (a provider may let users set any address); it is only shown, and only when ``email_verified``.
- ``p-<22 url-safe characters>``: a profile without a login, created by ``anonymous_profile``. Its key
  is the secret in its link (``?p=<key>``, "anyone with the link"); the display name is chosen by the
  person and selects nothing.

Nobody can type a login key into a link (the UI accepts only ``p-`` keys from a URL), and no key can be
guessed from a name.
"""

from __future__ import annotations

import hashlib
import ipaddress
import re
import secrets
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

#: The two reserved profile-key namespaces (profiles the UI opens only through a login or a link).
LOGIN_PREFIX = "oidc:"
LINK_PREFIX = "p-"
RESERVED_PREFIXES = (LOGIN_PREFIX, LINK_PREFIX)
#: A display name is at most this long (the key, not the name, identifies the profile).
DISPLAY_LEN = 64
#: ``allow_builds`` values (without a login): who may start heavy work from the browser.
ALLOW_BUILDS = ("loopback", "always", "never")

_LINK_RE = re.compile(r"^p-[A-Za-z0-9_-]{22}$")
_LOGIN_RE = re.compile(r"^oidc:[0-9a-f]{40}$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class IdentityError(ValueError):
    """A login or a display name that cannot name a profile; the message is safe to show."""


@dataclass(frozen=True)
class Identity:
    """One person as the app sees them.

    ``key`` is the profile key stored in the database ("" when there is no profile yet); ``display`` is
    what to show (always rendered as plain text); ``logged_in`` says the key comes from a login;
    ``admin`` says a login listed in the ``admins`` setting.
    """

    key: str
    display: str
    logged_in: bool = False
    admin: bool = False

    @property
    def has_profile(self) -> bool:
        return bool(self.key)


#: No login and no profile opened yet: the tabs work, nothing is recorded.
NOBODY = Identity("", "", False, False)


def _truthy(value: Any) -> bool:
    """``email_verified`` as providers send it: a JSON boolean, or (some providers) the string "true"."""
    return value is True or (isinstance(value, str) and value.strip().lower() == "true")


def login_key(iss: str, sub: str) -> str:
    """The profile key of a login: a hash of issuer and subject, exactly as the provider sent them."""
    digest = hashlib.sha256(f"{iss}\x00{sub}".encode("utf-8")).hexdigest()
    return LOGIN_PREFIX + digest[:40]


def verified_email(user_info: Mapping[str, Any]) -> str:
    """The login's e-mail, lower-cased, when the provider says it is verified; else ""."""
    email = user_info.get("email")
    if not isinstance(email, str) or not _truthy(user_info.get("email_verified")):
        return ""
    return email.strip().lower()


def is_admin(user_info: Mapping[str, Any], admins: Sequence[str]) -> bool:
    """True when the login matches an ``admins`` entry: a verified e-mail (any case) or ``iss|sub`` (exact)."""
    iss, sub = str(user_info.get("iss") or ""), str(user_info.get("sub") or "")
    email = verified_email(user_info)
    for entry in admins or ():
        entry = str(entry).strip()
        if "|" in entry:
            if sub and entry == f"{iss}|{sub}":
                return True
        elif email and entry.lower() == email:
            return True
    return False


def from_login(user_info: Mapping[str, Any], admins: Sequence[str]) -> Identity:
    """The identity of a logged-in person (``st.user`` as a dict): keyed by issuer + subject."""
    sub = user_info.get("sub")
    if not isinstance(sub, str) or not sub:
        raise IdentityError("The login gave no subject id, so it cannot name a profile.")
    iss = str(user_info.get("iss") or "")
    display = verified_email(user_info)[:DISPLAY_LEN] or _clean_display(user_info.get("name")) or "Signed-in user"
    return Identity(login_key(iss, sub), display, logged_in=True, admin=is_admin(user_info, admins))


def _clean_display(value: Any) -> str:
    if not isinstance(value, str):
        return ""
    return _CONTROL.sub("", value).strip()[:DISPLAY_LEN]


def check_display_name(name: Any) -> str:
    """A display name: 1-64 printable characters. It is only ever shown as text, never used as a key."""
    if not isinstance(name, str) or not name.strip():
        raise IdentityError("Give the profile a name (it is only shown, never used to find the profile).")
    name = name.strip()
    if len(name) > DISPLAY_LEN:
        raise IdentityError(f"A profile name may have at most {DISPLAY_LEN} characters (got {len(name):,}).")
    if _CONTROL.search(name):
        raise IdentityError("A profile name cannot contain control characters.")
    return name


def anonymous_profile(display: str) -> Identity:
    """A new profile without a login: an unguessable key (128 random bits) and the name the person chose."""
    return Identity(LINK_PREFIX + secrets.token_urlsafe(16), check_display_name(display))


def is_link_key(value: Any) -> bool:
    """True for a well-formed ``p-`` key (the only kind of key a URL may carry)."""
    return isinstance(value, str) and bool(_LINK_RE.match(value))


def is_login_key(value: Any) -> bool:
    return isinstance(value, str) and bool(_LOGIN_RE.match(value))


def is_reserved(name: str) -> bool:
    """True for names in the login or link namespaces (never created or chosen by typing a name)."""
    return name.startswith(RESERVED_PREFIXES)


def admins_setting(settings: Mapping[str, Any]) -> list[str]:
    """The ``admins`` setting as a list (a single string is one admin)."""
    value = settings.get("admins") or []
    if isinstance(value, str):
        value = [value]
    return [str(v).strip() for v in value if str(v).strip()]


def is_loopback(address: str) -> bool:
    """True when the server listens on this machine only (127.0.0.0/8, ::1, localhost); "" means everywhere."""
    address = (address or "").strip().strip("[]")
    if address == "localhost":
        return True
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return False


def may_run_heavy(identity: Identity, *, login_configured: bool, server_address: str,
                  settings: Mapping[str, Any]) -> tuple[bool, str]:
    """May this person start heavy work (builds, retrains, accepting tag edits into training)?

    With a login: admins only. Without one, the ``allow_builds`` setting decides: "loopback" (the default:
    allowed when the server listens on this machine only), "always" or "never". The string says why not.
    """
    if login_configured:
        if not identity.logged_in:
            return False, "Log in as an administrator to start builds, retrains or reviews."
        if not identity.admin:
            return False, "Only administrators (the admins setting) may start builds, retrains or reviews."
        return True, ""
    mode = str(settings.get("allow_builds", "loopback")).strip().lower()
    if mode == "always":
        return True, ""
    if mode == "never":
        return False, "Builds and reviews from the browser are turned off here (allow_builds = \"never\")."
    if mode != "loopback":
        return False, f"The allow_builds setting {mode[:20]!r} is not one of {', '.join(ALLOW_BUILDS)}."
    if is_loopback(server_address):
        return True, ""
    where = server_address or "every network interface"
    return False, (f"This server listens on {where}, not only on this machine, so builds and reviews from the "
                   "browser need a login with admins (or allow_builds = \"always\").")
