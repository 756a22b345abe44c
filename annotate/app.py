"""The PrefLab annotation app: log in, then the pages your role allows.

    preflab ui --server http://127.0.0.1:8000      # runs `streamlit run annotate/streamlit_app.py`, which calls main()

Navigation by role (st.navigation): annotator -> Rank, Arena, My rankings; reviewer -> + Review, Annotators;
admin -> + Data, Admin, Training, Loop; Leaderboard for everyone signed in. The app talks only to the server
(annotate.client); it never opens the database.

Pages are the scripts in annotate/views/ (not `pages/`: Streamlit would serve a `pages/` folder beside the entry
script by URL to anyone, before the role checks). Each page also checks the role itself (`require_role`).

A reload (F5) keeps the sign-in: the token is also kept in a cookie (annotate.client, "the sign-in cookie"), read
once when a session starts and checked with GET /api/me; logging out clears it and ends the token on the server.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import streamlit as st

from annotate.client import AUTH_KEY, FLASH_KEY, ApiError, server_url
from annotate.render import safe_markdown
from annotate.session import (
    COOKIE_CHECKED,
    current_user,
    forget_sign_in,
    get_client,
    read_cookie,
    remember_sign_in,
    restore_sign_in,
    write_cookie,
)

VIEWS = Path(__file__).parent / "views"
ROLE_LABELS = {"annotator": "Annotator", "reviewer": "Reviewer", "admin": "Admin"}


def _page(file: str, title: str, icon: str, *, default: bool = False) -> st.Page:
    """A page from annotate/views/."""
    return st.Page(str(VIEWS / file), title=title, icon=icon, default=default)


def _login() -> None:
    st.write("")
    _, middle, _ = st.columns([1, 1.1, 1])
    write_cookie()  # below the form (a logout clears the cookie here)
    with middle:
        st.title("⚖️ PrefLab", anchor=False)
        st.caption("Rank model answers. Your judgements teach the next model.")
        flash = st.session_state.pop(FLASH_KEY, None)
        if flash:
            st.warning(flash, icon=":material/schedule:")
        with st.form("login_form", border=True):
            name = st.text_input("User name", key="login_name", autocomplete="username")
            password = st.text_input(
                "Password", type="password", key="login_password", autocomplete="current-password"
            )
            submitted = st.form_submit_button("Log in", type="primary", width="stretch", key="login_submit")
        if submitted:
            if not name.strip() or not password:
                st.error("Enter your user name and password.")
                st.stop()
            try:
                auth = get_client().login(name.strip(), password)
            except ApiError as e:
                st.error(f"Could not log in: {e}", icon=":material/lock:")
                st.stop()
            st.session_state[AUTH_KEY] = auth
            remember_sign_in(auth)
            st.session_state.pop("login_password", None)
            st.rerun()
        st.caption(f"Server: `{server_url()}`")


def _logout() -> None:
    get_client().logout()  # ends the token on the server too, so the cookie's copy is useless from here on
    keep = {FLASH_KEY, COOKIE_CHECKED}  # the cookie this session started with is not read again
    for key in list(st.session_state.keys()):
        if key not in keep:
            del st.session_state[key]
    forget_sign_in()


def _expired(auth: dict) -> bool:
    """True if the token's expiry (as the server told us at login) has passed."""
    raw = auth.get("expires_at")
    if not raw:
        return False
    try:
        expires = datetime.fromisoformat(str(raw).replace("Z", "+00:00"))
    except ValueError:
        return False
    now = datetime.now(expires.tzinfo) if expires.tzinfo else datetime.now()
    return expires <= now


def _sidebar(user: dict) -> None:
    with st.sidebar:
        st.markdown(f"**{safe_markdown(user['name'])}**  \n{ROLE_LABELS.get(user['role'], user['role'])}")
        st.button("Log out", key="logout", icon=":material/logout:", on_click=_logout, width="stretch")
        write_cookie()


def _pages_for(role: str) -> dict[str, list[st.Page]]:
    sections = {
        "Annotate": [
            _page("rank.py", "Rank", ":material/format_list_numbered:", default=True),
            _page("arena.py", "Arena", ":material/swords:"),
            _page("history.py", "My rankings", ":material/history:"),
        ],
        "Review": [
            _page("review.py", "Review", ":material/rule:"),
            _page("annotators.py", "Annotators", ":material/groups:"),
        ]
        if role in ("reviewer", "admin")
        else [],
        "Manage": [
            _page("data.py", "Data", ":material/database:"),
            _page("admin.py", "Admin", ":material/admin_panel_settings:"),
            _page("training.py", "Training", ":material/model_training:"),
            _page("loop.py", "Loop", ":material/autorenew:"),
        ]
        if role == "admin"
        else [],
        "Results": [_page("leaderboard.py", "Leaderboard", ":material/leaderboard:")],
    }
    return {name: pages for name, pages in sections.items() if pages}


def main() -> None:
    """Streamlit entry: the login page, or the pages of the logged-in user's role."""
    st.set_page_config(page_title="PrefLab", page_icon="⚖️", layout="wide", initial_sidebar_state="expanded")
    if AUTH_KEY not in st.session_state and not st.session_state.get(COOKIE_CHECKED):
        st.session_state[COOKIE_CHECKED] = True  # a fresh session (a reload): sign in again from the cookie
        token = read_cookie()
        restored = restore_sign_in(token) if token else None
        if restored:
            st.session_state[AUTH_KEY] = restored
    auth = st.session_state.get(AUTH_KEY)
    if auth and _expired(auth):
        st.session_state.pop(AUTH_KEY, None)
        st.session_state[FLASH_KEY] = "Your session has expired. Please log in again."
        forget_sign_in()
    user = current_user()
    if user is None:  # the arena leaderboard needs a login too (its API does), so: the login page only
        login = st.Page(_login, title="Log in", icon=":material/login:", url_path="login", default=True)
        nav = st.navigation([login], position="hidden")
    else:
        _sidebar(user)
        nav = st.navigation(_pages_for(user["role"]))
    nav.run()


def require_role(*roles: str) -> dict:
    """Top of every page: the logged-in user if their role is one of `roles`; otherwise say so and stop.

    Navigation already hides pages a role may not use; this catches a page reached another way (a URL, an
    expired session). The server checks every route on its own as well.
    """
    user = current_user()
    if user is None:
        _login()
        st.stop()
    if roles and user["role"] not in roles:
        st.error(
            f"This page is for {' or '.join(roles)} accounts; you are logged in as {user['role']}.",
            icon=":material/block:",
        )
        st.stop()
    return user
