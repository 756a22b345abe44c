"""The Streamlit session's side of the client: one pooled HTTP client per UI process, the signed-in user in
st.session_state, and the sign-in cookie that lets a reload (F5) keep the sign-in.

    from annotate.session import current_user, get_client
    user = current_user()        # None until someone signs in
    client = get_client()        # an annotate.client.Client with this session's token

A 401 on any call but login means the session expired: the client returned here then logs out and shows the
login page with a message.
"""

from __future__ import annotations

import json
from datetime import datetime

import httpx

from annotate.client import AUTH_KEY, FLASH_KEY, ApiError, Client, SessionExpiredError, server_url


def _shared_http() -> httpx.Client:
    """One pooled httpx client per UI process (thread-safe), shared by every session."""
    import streamlit as st

    @st.cache_resource(show_spinner=False)
    def _make() -> httpx.Client:
        return httpx.Client(timeout=httpx.Timeout(60.0, connect=5.0))

    return _make()


def _expire_session(error: SessionExpiredError) -> None:
    import streamlit as st

    st.session_state.pop(AUTH_KEY, None)
    st.session_state[FLASH_KEY] = "Your session has expired. Please log in again."
    forget_sign_in()
    st.rerun()


# ---- the sign-in cookie: a reload (F5) keeps you signed in ------------------------------------------------
#
# A reload starts a new Streamlit session with empty session state; the browser's cookies come with it
# (st.context.cookies, read-only). The token is written to a cookie by a small script in the page, since Streamlit
# cannot set one itself: SameSite=Strict, Secure over https, expiring with the token. It is never put in a URL.
# The API reads only the Authorization header, never this cookie, so the cookie adds no cross-site request risk.

COOKIE = "preflab_session"
COOKIE_KEY = "auth_cookie"  # st.session_state: (token, max-age seconds) to write, or (None, 0) to clear
COOKIE_CHECKED = "auth_cookie_checked"  # the cookie was read once this session (it does not change until a reload)


def cookie_script(token: str | None, max_age_s: int) -> str:
    """A <script> that sets the sign-in cookie to `token` for `max_age_s` seconds, or clears it (token None)."""
    value = json.dumps(token or "").replace("<", "\\u003c")  # a JS string literal that cannot end the script
    age = max(0, int(max_age_s)) if token else 0
    return (
        "<script>(function(){var secure=location.protocol==='https:'?'; Secure':'';"
        f"document.cookie='{COOKIE}='+encodeURIComponent({value})+'; Max-Age={age}; Path=/; SameSite=Strict'+secure;"
        "})();</script>"
    )


def remember_sign_in(auth: dict) -> None:
    """After a login: write the cookie on the next page render, expiring when the token does."""
    import streamlit as st

    max_age = 12 * 3600  # the server's default token lifetime, if its expiry cannot be read
    raw = auth.get("expires_at")
    if raw:
        try:
            expires = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
            now = datetime.now(expires.tzinfo) if expires.tzinfo else datetime.now()
            max_age = int((expires - now).total_seconds())
        except ValueError:
            pass
    if max_age > 0:
        st.session_state[COOKIE_KEY] = (auth["token"], max_age)


def forget_sign_in() -> None:
    """Clear the cookie on the next page render (log out, expired or refused token)."""
    import streamlit as st

    st.session_state[COOKIE_KEY] = (None, 0)


def write_cookie() -> None:
    """Render the pending cookie change, if any (an invisible script element)."""
    import streamlit as st

    pending = st.session_state.pop(COOKIE_KEY, None)
    if pending is not None:
        st.html(cookie_script(*pending), unsafe_allow_javascript=True)


def read_cookie() -> str | None:
    """The token in the sign-in cookie the browser sent when this session started, if any."""
    import streamlit as st

    return st.context.cookies.get(COOKIE) or None


def restore_sign_in(token: str) -> dict | None:
    """A token from the cookie, checked with GET /api/me: the session's auth dict, or None (and the cookie is
    cleared) if the server refuses it. An unreachable server keeps the cookie for the next try."""
    client = Client(server_url(), token=token, http=_shared_http())
    try:
        user = client.me()
    except SessionExpiredError:
        forget_sign_in()
        return None
    except ApiError:
        return None
    return {"token": token, "expires_at": None, "user": user}


def get_client() -> Client:
    """The client for this Streamlit session: the shared connection pool plus this person's token."""
    import streamlit as st

    auth = st.session_state.get(AUTH_KEY) or {}
    return Client(server_url(), token=auth.get("token"), http=_shared_http(), on_expired=_expire_session)


def current_user() -> dict | None:
    """{id, name, role} of the logged-in person, or None."""
    import streamlit as st

    auth = st.session_state.get(AUTH_KEY)
    return auth.get("user") if auth else None


# ---- engines: what each serves, serving an adapter (Admin page) --------------------------------------------
