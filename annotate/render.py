"""Safe rendering of model text: answers and conversations are data, never markup we trust.

    from annotate.render import safe_markdown, show_conversation, show_answer
    st.markdown(safe_markdown(text))      # raw HTML shows as text, code/tables/CJK render as markdown

Streamlit's st.markdown (unsafe_allow_html=False, never changed here) already refuses to run HTML; on top of
that `safe_markdown` turns "<" into an entity outside code, so a <script> or <img onerror> in an answer is
shown to the annotator as the literal text the model wrote (they may need to judge it), "$" is escaped so
prices are not swallowed by Streamlit's LaTeX, and a markdown image becomes a link, so showing a text never makes
the browser fetch a URL from elsewhere. Code blocks and inline code are left untouched: there markdown
shows every character as written.
"""

from __future__ import annotations

import re

import streamlit as st

LONG_ANSWER_CHARS = 1500  # past this an answer scrolls inside its card instead of stretching the page
LONG_ANSWER_LINES = 30
ANSWER_HEIGHT_PX = 460

_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})")
_CODE_SPAN = re.compile(r"(`+)(.+?)(?<!`)\1(?!`)", re.DOTALL)


def _escape_text(text: str) -> str:
    """Escape outside code: '<' becomes an entity (raw HTML shows as text), '$' is not LaTeX."""
    out = []
    last = 0
    for m in _CODE_SPAN.finditer(text):  # inline code shows characters verbatim: leave it alone
        out.append(_escape_plain(text[last : m.start()]))
        out.append(m.group(0))
        last = m.end()
    out.append(_escape_plain(text[last:]))
    return "".join(out)


def _escape_plain(text: str) -> str:
    text = text.replace("<", "&lt;")
    text = _unimage(text)
    return re.sub(r"(?<!\\)\$", r"\\$", text)


# ![alt](url) and ![alt][ref]: the browser would fetch the URL as soon as the text is shown (a tracking pixel in a
# model answer or a comment tells its owner who read it, and when). Shown as a link to click instead.
_IMAGE = re.compile(r"!\[([^\[\]\n]*)\]")


def _unimage(text: str) -> str:
    """Every markdown image becomes a link: `![cat](u)` -> `[🖼 cat](u)`; any other `![` loses its image meaning."""
    text = _IMAGE.sub(lambda m: f"[🖼 {m.group(1).strip() or 'image'}]", text)
    return text.replace("![", "!\\[")


def safe_markdown(text: str | None) -> str:
    """Markdown for st.markdown in which nothing can act as HTML; fenced code blocks are kept verbatim."""
    if not text:
        return ""
    lines = str(text).replace("\r\n", "\n").split("\n")
    out: list[str] = []
    prose: list[str] = []
    fence: str | None = None  # the opening fence while inside a fenced block
    for line in lines:
        m = _FENCE.match(line)
        if fence is None:
            if m:
                if prose:
                    out.append(_escape_text("\n".join(prose)))
                prose = []
                fence = m.group(2)
                out.append(line)
            else:
                prose.append(line)
        else:
            out.append(line)
            closing = m and m.group(2)[0] == fence[0] and len(m.group(2)) >= len(fence)
            if closing and not line.strip()[len(m.group(2)) :]:  # a closing fence carries no info string
                fence = None
    if prose:
        out.append(_escape_text("\n".join(prose)))
    return "\n".join(out)


def is_long(text: str) -> bool:
    return len(text) > LONG_ANSWER_CHARS or text.count("\n") > LONG_ANSWER_LINES


def show_answer(text: str, *, key: str) -> None:
    """One answer as safe markdown; a long one scrolls inside a fixed-height box so cards stay comparable."""
    if is_long(text):
        with st.container(height=ANSWER_HEIGHT_PX, border=False, key=f"{key}_scroll"):
            st.markdown(safe_markdown(text))
        st.caption(f"{len(text):,} characters · scroll inside the box to read all of it")
    else:
        st.markdown(safe_markdown(text))


_AVATARS = {"system": ":material/settings:", "user": "user", "assistant": "assistant"}


def show_conversation(messages: list[dict]) -> None:
    """The prompt as chat bubbles: system note, earlier turns, and the last user turn being answered."""
    for msg in messages:
        role = str(msg.get("role") or "user")
        content = msg.get("content")
        if isinstance(content, list):  # OpenAI-style parts: show the text parts, name the others
            content = "\n\n".join(
                p.get("text", "") if p.get("type") == "text" else f"*[{p.get('type', 'part')}]*" for p in content
            )
        if role == "system":
            with st.chat_message("system", avatar=_AVATARS["system"]):
                st.caption("System instructions")
                st.markdown(safe_markdown(content))
        else:
            with st.chat_message("assistant" if role == "assistant" else "user"):
                st.markdown(safe_markdown(content))


def order_preview(ranks: dict[str, int | None]) -> str:
    """'Answer 2 > Answer 1 = Answer 3 > Answer 4' from {label: rank}; unranked answers are left out."""
    ranked = sorted((r, label) for label, r in ranks.items() if r is not None)
    groups: list[list[str]] = []
    prev = None
    for r, label in ranked:
        if r != prev:
            groups.append([])
            prev = r
        groups[-1].append(label)
    return " > ".join(" = ".join(g) for g in groups)


def dense_ranks(ranks: dict, /) -> dict:
    """{key: rank} renumbered 1, 2, 3... keeping order and ties (1, 1, 3 -> 1, 1, 2)."""
    levels = {r: i + 1 for i, r in enumerate(sorted(set(ranks.values())))}
    return {k: levels[r] for k, r in ranks.items()}
