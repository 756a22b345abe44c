"""The data the UI tests run against: four users (one per role, two annotators), DATASET with answers that
hold HTML, CJK, tables, code and a long text, and VISUAL_DATASET with an image. The `ui_server` fixture
(tests/conftest.py) serves a fresh database seeded with it.
"""

from __future__ import annotations

from pathlib import Path

from db import users as user_db
from db.hashing import prompt_hash, text_hash
from db.staging import Batch
from db.store import Store

PASSWORDS = {"ann": "ann-secret-1", "ann2": "ann2-secret-1", "rev": "rev-secret-1", "adm": "adm-secret-1"}
ROLES = {"ann": "annotator", "ann2": "annotator", "rev": "reviewer", "adm": "admin"}
DATASET = "ui-demo"
VISUAL_DATASET = "ui-visual"

SCRIPT_ANSWER = (
    'Here you go: <script>document.title="pwned";window.__pwned=1</script> <b>bold?</b> '
    '<img src=x onerror="window.__pwned=2">'
)
CJK_ANSWER = "你好！这是中文回答。¡Hola! Respuesta en español con ñ y acentos: café. Emoji: 🎉🚀"
TABLE_ANSWER = "| lang | hello |\n|---|---|\n| 中文 | 你好 |\n| es | hola |\n\nCosts $5 and $10."
CODE_ANSWER = 'Use this:\n\n```python\ndef greet(name):\n    return f"<hi> {name}"\n```\n\nThat is all.'
LONG_ANSWER = "\n\n".join(f"Paragraph {i}: " + "a long answer keeps going. " * 12 for i in range(40))

PROMPTS = [
    {
        "messages": [
            {"role": "system", "content": "You are a helpful assistant."},
            {"role": "user", "content": "Say hello in Chinese and Spanish 🌍"},
        ],
        "answers": [CJK_ANSWER, SCRIPT_ANSWER, TABLE_ANSWER],
    },
    {
        "messages": [
            {"role": "user", "content": "Write a Python greeting function."},
            {"role": "assistant", "content": "Which language style?"},
            {"role": "user", "content": "Idiomatic, please."},
        ],
        "answers": [CODE_ANSWER, "def greet(n): print('hi', n)", LONG_ANSWER, "I cannot help with that."],
    },
    {
        "messages": [{"role": "user", "content": "¿Cuál es la capital de España?"}],
        "answers": ["Madrid.", "Barcelona.", "La capital de España es Madrid. 🇪🇸"],
    },
    {"messages": [{"role": "user", "content": "2 + 2 = ?"}], "answers": ["4", "5", "four"]},
]


def seed_ui(store: Store, *, k: int = 2) -> None:
    """Users (one per role, two annotators) and DATASET with PROMPTS, k annotators per prompt."""
    from argon2 import PasswordHasher

    from db import queue

    # Cheap argon2 parameters: the server verifies with the parameters stored in the hash, so logins in these
    # tests take milliseconds (the real cost is the server's business and tested there).
    hasher = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    for name, role in ROLES.items():
        user_db.add_user(store, name, role=role, password_hash=hasher.hash(PASSWORDS[name]), created_by="test")
    batch = Batch()
    for p in PROMPTS:
        key = prompt_hash(p["messages"])
        batch.prompts.append({"key": key, "messages": _json(p["messages"]), "source": "ui-test"})
        for i, text in enumerate(p["answers"]):
            batch.generations.append(
                {
                    "prompt_key": key,
                    "gen_key": text_hash(text),
                    "text": text,
                    "model": f"model-{'abcd'[i]}",
                    "kind": "model",
                }
            )
    # two earlier annotators who disagree about the last prompt, so Review has something to show
    last = PROMPTS[-1]
    last_key = prompt_hash(last["messages"])
    for who, ranks in (("ria", [1, 3, 2]), ("sam", [2, 1, 3])):
        batch.rankings.append(
            {
                "ranking_key": who,
                "prompt_key": last_key,
                "annotator": who,
                "user_kind": "imported",
                "status": "submitted",
                "source": "import",
            }
        )
        batch.items += [
            {"ranking_key": who, "gen_key": text_hash(t), "rank": r, "position": i}
            for i, (t, r) in enumerate(zip(last["answers"], ranks, strict=True))
        ]
    store.write_batch(DATASET, batch, created_by="test")
    queue.update_dataset(store, DATASET, k=k, guidelines="Prefer **correct**, kind answers. <i>not html</i>")
    seed_visual(store, Path(store.path).parent / "chart.png")


def seed_visual(store: Store, image: Path) -> None:
    """VISUAL_DATASET: one visual question whose image the server serves from `image`."""
    from PIL import Image

    from db import media

    Image.new("RGB", (64, 48), (79, 70, 229)).save(image)
    image, _ = media.keep(image, media.media_dir(store))  # where an import keeps it: the server serves only those
    messages = [{"role": "user", "content": "What colour is this image? 🎨"}]
    key = prompt_hash(messages)
    batch = Batch(prompts=[{"key": key, "messages": _json(messages), "assets": _json([str(image)])}])
    batch.generations = [{"prompt_key": key, "gen_key": text_hash(t), "text": t} for t in ("Indigo.", "Red.")]
    store.write_batch(VISUAL_DATASET, batch, created_by="test")


def _json(value) -> str:
    import json

    return json.dumps(value, ensure_ascii=False)
