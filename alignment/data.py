"""Snapshots in, TRL datasets out. A snapshot is a JSONL or Parquet file that `db.export` wrote.

Formats (one row each, as TRL defines them; both the plain and the conversational form are accepted):

    trl           {"prompt": "Hi?", "chosen": "Hello!", "rejected": "Go away."}
    trl-messages  {"prompt": [{"role": "user", "content": "Hi?"}],
                   "chosen": [{"role": "assistant", "content": "Hello!"}],
                   "rejected": [{"role": "assistant", "content": "Go away."}]}
    sft           {"messages": [{"role": "user", "content": "Hi?"}, {"role": "assistant", "content": "Hello!"}]}
    kto           {"prompt": "Hi?", "completion": "Hello!", "label": true}
    kto-messages  {"prompt": [{"role": "user", "content": "Hi?"}],
                   "completion": [{"role": "assistant", "content": "Hello!"}], "label": true}

What each stage needs:
    sft                messages | prompt+completion | text   (preference rows: prompt + chosen)
    reward, dpo        chosen + rejected (+ prompt)
    ppo, rloo, grpo    prompt  (messages rows: everything before the last assistant turn)
    kto                prompt + completion + label (true: thumbs up), all rows plain or all conversational

Extra columns are dropped. Messages stored as JSON text (Parquet) are decoded.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path

from alignment.errors import DataError

log = logging.getLogger(__name__)

PREFERENCE_STAGES = ("reward", "dpo")
PROMPT_STAGES = ("ppo", "rloo", "grpo")


def snapshot_id(path: str | Path) -> str:
    """The snapshot's content hash: the id db.export reported (sidecar, or a Parquet file's own metadata), else
    sha256 of the file bytes."""
    path = Path(path)
    for sidecar in (path.with_name(path.name + ".snapshot.json"), path.with_name(path.name + ".meta.json")):
        if sidecar.exists():
            try:
                meta = json.loads(sidecar.read_text(encoding="utf-8"))
                for key in ("snapshot_id", "content_hash", "sha256"):
                    if meta.get(key):
                        return str(meta[key])
            except (OSError, json.JSONDecodeError):
                pass
    if path.suffix == ".parquet":  # a Parquet export names its snapshot inside (db.export.files)
        import pyarrow.parquet as pq

        embedded = (pq.read_schema(path).metadata or {}).get(b"preflab.snapshot_id")
        if embedded:
            return embedded.decode()
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def read_rows(path: str | Path) -> list[dict]:
    """All rows of a JSONL (or JSON array) or Parquet file, messages decoded."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"{path}: no such snapshot file")
    if path.suffix == ".parquet":
        import pyarrow.parquet as pq

        rows = pq.read_table(path).to_pylist()
    else:
        rows = []
        with path.open(encoding="utf-8") as f:
            text = f.read()
        if text.lstrip().startswith("["):
            rows = json.loads(text)
        else:
            # split on "\n" only: str.splitlines() also breaks at U+0085/U+2028 inside JSON strings
            for n, line in enumerate(text.split("\n"), 1):
                if not line.strip():
                    continue
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise DataError(f"{path}:{n}: not valid JSON ({e.msg})") from None
                if not isinstance(rows[-1], dict):
                    raise DataError(f"{path}:{n}: each line must be a JSON object")
    return [{k: _decode(v) for k, v in row.items()} for row in rows]


def _decode(value):
    """Parquet exports may hold message lists as JSON text; turn those back into lists."""
    if isinstance(value, str) and value.startswith("[{") and '"role"' in value:
        try:
            decoded = json.loads(value)
        except json.JSONDecodeError:
            return value
        if isinstance(decoded, list) and all(isinstance(m, dict) and "role" in m for m in decoded):
            return decoded
    return value


def _strip_messages(messages: list[dict]) -> list[dict]:
    return [{"role": m["role"], "content": m.get("content") or ""} for m in messages]


def _prompt_of(row: dict):
    if "prompt" in row and row["prompt"] is not None:
        p = row["prompt"]
        return _strip_messages(p) if isinstance(p, list) else p
    if isinstance(row.get("messages"), list):
        msgs = _strip_messages(row["messages"])
        while msgs and msgs[-1]["role"] == "assistant":
            msgs = msgs[:-1]
        return msgs or None
    return None


def rows_for_stage(stage: str, rows: list[dict], *, source: str = "data") -> list[dict]:
    """Keep the columns `stage` needs, in TRL's shape; raise DataError naming what is missing."""
    if not rows:
        raise DataError(f"{source}: the snapshot has no rows")
    cols = set().union(*(r.keys() for r in rows[:100]))
    out = []
    if stage == "sft":
        if "messages" in cols:
            out = [{"messages": _strip_messages(r["messages"])} for r in rows if r.get("messages")]
        elif {"prompt", "completion"} <= cols:
            out = [{"prompt": r["prompt"], "completion": r["completion"]} for r in rows]
        elif {"prompt", "chosen"} <= cols:  # best-ranked answers of a preference snapshot
            out = [{"prompt": _prompt_of(r), "completion": r["chosen"]} for r in rows]
        elif "text" in cols:
            out = [{"text": r["text"]} for r in rows]
        else:
            raise DataError(
                f"{source}: sft needs a 'messages' column (or prompt+completion, prompt+chosen, text); "
                f"found {sorted(cols)}. Export with --format sft or trl-messages."
            )
    elif stage in PREFERENCE_STAGES:
        if not {"chosen", "rejected"} <= cols:
            raise DataError(
                f"{source}: {stage} needs 'chosen' and 'rejected' columns; found {sorted(cols)}. "
                "Export with --format trl or trl-messages."
            )
        for r in rows:
            row = {"chosen": r["chosen"], "rejected": r["rejected"]}
            if "prompt" in r:
                row["prompt"] = _prompt_of(r)
            for k in ("chosen", "rejected"):
                if isinstance(row[k], list):
                    row[k] = _strip_messages(row[k])
            out.append(row)
    elif stage == "kto":
        out = _kto_rows(rows, cols, source)
    elif stage in PROMPT_STAGES:
        out = [{"prompt": p} for p in map(_prompt_of, rows) if p]
        if not out:
            raise DataError(f"{source}: {stage} needs prompts ('prompt' or 'messages' column); found {sorted(cols)}")
    else:
        raise DataError(f"unknown stage '{stage}'")
    return out


def _kto_rows(rows: list[dict], cols: set, source: str) -> list[dict]:
    """prompt, completion, label rows for KTO. One form throughout (a column cannot hold text in one row and
    messages in another), and a real boolean label: a wrong row is named by its line."""
    if not {"prompt", "completion", "label"} <= cols:
        raise DataError(
            f"{source}: kto needs 'prompt', 'completion' and 'label' columns; found {sorted(cols)}. "
            "Export with --format kto or kto-messages."
        )
    out = []
    conversational = isinstance(rows[0].get("completion"), list)
    for n, r in enumerate(rows, 1):
        if not isinstance(r.get("label"), bool):
            raise DataError(f"{source}: row {n}: field 'label' must be true or false, got {r.get('label')!r}")
        prompt, completion = _prompt_of(r), r.get("completion")
        if isinstance(completion, list) != conversational or isinstance(prompt, list) != conversational:
            form = "messages" if conversational else "text"
            raise DataError(
                f"{source}: row {n}: field 'completion' (or 'prompt') is not {form} like the first row's: a kto "
                "snapshot is all text (--format kto) or all messages (--format kto-messages)"
            )
        if conversational:
            completion = _strip_messages(completion)
        out.append({"prompt": prompt, "completion": completion, "label": r["label"]})
    return out


def load_dataset_for(
    stage: str, path: str | Path, *, max_samples: int | None = None, eval_fraction: float = 0.0, seed: int = 0
):
    """(train, eval or None) `datasets.Dataset`s for `stage` from a snapshot file."""
    from datasets import Dataset

    rows = rows_for_stage(stage, read_rows(path), source=str(path))
    if max_samples:
        rows = rows[:max_samples]
    ds = Dataset.from_list(rows)
    if eval_fraction and len(ds) >= 4:
        split = ds.train_test_split(test_size=eval_fraction, seed=seed)
        return split["train"], split["test"]
    return ds, None
