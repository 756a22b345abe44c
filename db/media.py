"""Images of visual questions: checked when imported, kept in the database's own media folder, served from there.

    from db import media
    root = media.media_dir(store)                               # <database>.media/, next to the database file
    path = media.check_image(folder, "img/cat.png", roots)      # ImageError unless a real image inside a root
    stored = media.keep(path, root)                              # <root>/<sha256>.png, copied once
    kind = media.image_type(stored)                              # "image/png"

An import names images by path. A path from a file is untrusted: it must resolve (symbolic links followed)
inside the imported file's folder or a configured media root (PREFLAB_MEDIA_ROOT, several separated by
os.pathsep), and the file must be an image by its first bytes, not by its name. The import then copies it into
the media folder under its content hash, so the server serves files from one folder it owns and never a path a
file named. SVG is not accepted: it is a document that can carry script.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from db.paths import home

MEDIA_ROOT_ENV = "PREFLAB_MEDIA_ROOT"
MAX_IMAGE_BYTES = 50 * 2**20  # a large photo is a few MB; this bounds what an import copies per image

# (first bytes, content type, file suffix); WebP is RIFF....WEBP and checked on its own below
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", "image/png", ".png"),
    (b"\xff\xd8\xff", "image/jpeg", ".jpg"),
    (b"GIF87a", "image/gif", ".gif"),
    (b"GIF89a", "image/gif", ".gif"),
    (b"BM", "image/bmp", ".bmp"),
)


class ImageError(ValueError):
    """An image path or file that may not be imported or served; the message says why."""


def configured_roots() -> list[Path]:
    """The media roots named by PREFLAB_MEDIA_ROOT (resolved), in order."""
    raw = os.environ.get(MEDIA_ROOT_ENV, "")
    return [Path(p).resolve() for p in raw.split(os.pathsep) if p.strip()]


def media_dir(store) -> Path:
    """The folder holding a database's imported images: `<database file>.media`, or PREFLAB_HOME/media for an
    in-memory database."""
    if store.path in ("", ":memory:") or store.path.startswith(":memory:"):
        return home() / "media"
    db = Path(store.path).resolve()
    return db.with_name(db.name + ".media")


def image_type(path: Path) -> tuple[str, str] | None:
    """(content type, suffix) from the file's first bytes, or None if it is not an image we serve."""
    with open(path, "rb") as fh:
        head = fh.read(16)
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "image/webp", ".webp"
    for magic, kind, suffix in _MAGIC:
        if head.startswith(magic):
            return kind, suffix
    return None


def inside(path: Path, root: Path) -> bool:
    """True if `path`, with every symbolic link resolved, lies inside `root` (also resolved)."""
    real, real_root = Path(os.path.realpath(path)), Path(os.path.realpath(root))
    return real == real_root or real.is_relative_to(real_root)


def check_image(folder: Path, given: str, roots: list[Path]) -> Path:
    """The resolved path of image `given` (relative to `folder`, or absolute) if it lies inside one of `roots`
    and is an image; ImageError naming the problem otherwise."""
    resolved = Path(os.path.realpath(folder / given))
    if not any(inside(resolved, root) for root in roots):
        where = " or ".join(str(r) for r in roots)
        raise ImageError(
            f"image path {given!r} leads outside the allowed folders ({where}); put the image in the file's "
            f"folder or below it (relative paths), or set {MEDIA_ROOT_ENV}"
        )
    if not resolved.is_file():
        raise ImageError(f"image not found: {resolved} (paths are relative to the file's folder)")
    size = resolved.stat().st_size
    if size > MAX_IMAGE_BYTES:
        raise ImageError(f"image {resolved.name} is {size:,} bytes, over the limit of {MAX_IMAGE_BYTES:,}")
    if image_type(resolved) is None:
        raise ImageError(f"{resolved.name} is not a PNG, JPEG, GIF, WebP or BMP image (checked by its content)")
    return resolved


def keep(path: Path, root: Path) -> tuple[Path, str]:
    """Copy an image checked by check_image into `root` under its content hash (once); (stored path, sha256)."""
    data = path.read_bytes()
    digest = hashlib.sha256(data).hexdigest()
    kind = image_type(path)
    target = root / f"{digest}{kind[1] if kind else ''}"
    if not target.is_file():
        root.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(f".{target.name}.{os.getpid()}.part")
        partial.write_bytes(data)
        os.replace(partial, target)  # a reader never sees half an image
    return target, digest


def servable(entry: str, root: Path) -> tuple[Path, str]:
    """(path, content type) of a stored asset that may be served: inside the media folder and an image.
    ImageError otherwise (an asset stored elsewhere by an older import is refused, not followed)."""
    path = Path(entry)
    if not path.is_absolute() or not inside(path, root):
        raise ImageError("this asset is not in the server's media folder; import the file again to serve it")
    real = Path(os.path.realpath(path))
    if not real.is_file():
        raise ImageError(f"the asset file {path.name} is missing on the server")
    kind = image_type(real)
    if kind is None:
        raise ImageError(f"the asset file {path.name} is not an image")
    return real, kind[0]


def prompt_assets(store, prompt_id: int, *, seen_by: int | None = None) -> list[str] | None:
    """The stored asset paths of a prompt; None if there is no such prompt, or, with `seen_by`, if that user was
    never handed it (an annotator sees the images of the prompts the queue gave them, not any prompt's)."""
    sql = "SELECT CAST(assets AS VARCHAR) AS assets FROM prompts p WHERE id = ?"
    params: list = [prompt_id]
    if seen_by is not None:
        sql += (
            " AND (EXISTS (SELECT 1 FROM assignments a WHERE a.prompt_id = p.id AND a.user_id = ?)"
            " OR EXISTS (SELECT 1 FROM rankings r WHERE r.prompt_id = p.id AND r.user_id = ?))"
        )
        params += [seen_by, seen_by]
    rows = store.query(sql, params)
    if not rows:
        return None
    return json.loads(rows[0]["assets"]) if rows[0]["assets"] else []
