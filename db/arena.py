"""SQL for arena battles and votes. A vote is also a two-answer ranking (source 'arena'), so its pair is
derived like any annotation pair and exported with `preflab export --source arena`.

    battle_id = create_battle(store, "tiny", "sft1", created_by="ana", user_id=3)
    vote_id = record_vote(store, battle_id, "a", user=user)

Mapping of a vote to a ranking: A better -> A rank 1, B rank 2; tie -> both rank 1; both bad -> both rank 1
with all_bad = true. The ranking's prompt is what the models were sent for the voted turn (RAG context
included), in the dataset 'arena'. One ranking per person per prompt is a schema rule: a second vote by the
same person on an identical prompt is kept in arena_votes but adds no second ranking. Two identical answers
make no ranking either (there is nothing to prefer). In a multi-turn battle each side has its own history;
the ranking's prompt is side A's conversation up to the voted turn (side B's earlier answers differ), so
pairs from later turns are approximate; the vote's metadata says multi_turn = true so exports can drop them.
"""

from __future__ import annotations

import json
import secrets

from db.errors import ConflictError, InputError, NotFoundError
from db.hashing import prompt_hash, text_hash
from db.staging import STAGE_SCHEMAS, Batch
from db.store import Store

ARENA_DATASET = "arena"
WINNERS = ("a", "b", "tie", "both_bad")


def create_battle(
    store: Store,
    model_a: str,
    model_b: str,
    *,
    created_by: str,
    user_id: int | None = None,
    rag_collection: str | None = None,
    rag_k: int | None = None,
) -> int:
    """A new battle with a random id (not the next in a sequence: an id says nothing about other battles)."""
    while True:
        battle_id = secrets.randbits(52) + 1  # stays exact in JavaScript numbers (2**53)
        with store._lock:
            taken = store.con.execute("SELECT count(*) FROM arena_battles WHERE id = ?", [battle_id]).fetchall()[0][0]
            if not taken:
                store.con.execute(
                    "INSERT INTO arena_battles (id, model_a, model_b, rag_collection, rag_k, turns, user_id, "
                    "created_by) VALUES (?, ?, ?, ?, ?, '[]', ?, ?)",
                    [battle_id, model_a, model_b, rag_collection, rag_k, user_id, created_by],
                )
                return battle_id


def get_battle(store: Store, battle_id: int, *, user: dict | None = None) -> dict:
    """The battle; with `user`, only if it is theirs (another user's battle answers as if it did not exist, so
    nobody can vote in it, add turns or learn its models)."""
    rows = store.query("SELECT *, CAST(created_at AS VARCHAR) AS created FROM arena_battles WHERE id = ?", [battle_id])
    if not rows or (user is not None and rows[0]["user_id"] != user.get("id")):
        raise NotFoundError(f"no arena battle with id {battle_id} of yours")
    b = rows[0]
    b["turns"] = json.loads(b["turns"])
    return b


def save_turns(store: Store, battle_id: int, turns: list[dict], identity_leak: bool) -> None:
    with store._lock:
        store.con.execute(
            "UPDATE arena_battles SET turns = ?, identity_leak = identity_leak OR ? WHERE id = ?",
            [json.dumps(turns, ensure_ascii=False), identity_leak, battle_id],
        )


def record_vote(store: Store, battle_id: int, winner: str, *, user: dict, comment: str | None = None) -> dict:
    """Store a vote on the battle's last turn; returns {vote_id, ranking_id (None if not added), pairs}."""
    if winner not in WINNERS:
        raise InputError(f"winner must be one of {', '.join(WINNERS)}, got '{winner}'", field="winner")
    battle = get_battle(store, battle_id, user=user)
    if battle["voted"]:
        raise ConflictError(f"battle {battle_id} already has a vote; start a new battle")
    if not battle["turns"]:
        raise InputError(f"battle {battle_id} has no answers yet: send a message first", field="battle_id")
    turn = battle["turns"][-1]
    messages = turn["messages_a"]  # what was sent; the last user turn carries the RAG context
    text_a, text_b = turn["a"]["text"], turn["b"]["text"]
    pkey = prompt_hash(messages)
    ranks = {"a": (1, 2), "b": (2, 1), "tie": (1, 1), "both_bad": (1, 1)}[winner]
    ranking_key = f"arena-battle-{battle_id}"
    meta = {
        "battle_id": battle_id,
        "turn": len(battle["turns"]),
        "rag_collection": battle["rag_collection"],
        "question": turn["user"],
        "multi_turn": len(battle["turns"]) > 1,
    }
    gens = []
    for side, text, model in (("a", text_a, battle["model_a"]), ("b", text_b, battle["model_b"])):
        ans = turn[side]
        gens.append(
            {
                "prompt_key": pkey,
                "gen_key": text_hash(text),
                "text": text,
                "kind": "arena",
                "model": model,
                "engine": ans.get("engine"),
                "adapter": ans.get("adapter"),
                "params": json.dumps(ans.get("params") or {}, ensure_ascii=False),
                "latency_ms": ans.get("latency_ms"),
                "finish_reason": ans.get("finish_reason"),
                "completion_tokens": ans.get("completion_tokens"),
                "metadata": json.dumps({"side": side, "citations": ans.get("citations") or []}, ensure_ascii=False),
            }
        )
    same_text = text_a == text_b  # identical answers collapse to one generation: nothing to prefer
    batch = Batch(
        prompts=[
            {
                "key": pkey,
                "messages": json.dumps(messages, ensure_ascii=False),
                "source": "arena",
                "external_id": f"battle-{battle_id}",
                "metadata": json.dumps(meta, ensure_ascii=False),
            }
        ],
        generations=gens,
        rankings=[]
        if same_text
        else [
            {
                "ranking_key": ranking_key,
                "prompt_key": pkey,
                "annotator": user["name"],
                "user_kind": "human",
                "status": "submitted",
                "source": "arena",
                "all_bad": winner == "both_bad",
                "comment": comment,
            }
        ],
        items=[]
        if same_text
        else [
            {"ranking_key": ranking_key, "gen_key": text_hash(text_a), "rank": ranks[0], "position": 0},
            {"ranking_key": ranking_key, "gen_key": text_hash(text_b), "rank": ranks[1], "position": 1},
        ],
    )
    tables = batch.tables()
    with store._lock:
        for name, table in tables.items():
            store.con.register(name, table)
        try:
            with store.transaction():
                dataset_id = store.ensure_dataset(
                    ARENA_DATASET, created_by=user["name"], description="prompts and answers voted on in the arena"
                )
                counts = store.commit_staged(dataset_id, created_by=user["name"])
                prompt_id = store._first(
                    "SELECT id FROM prompts WHERE dataset_id = ? AND content_hash = ?", [dataset_id, pkey]
                )[0]
                gen_ids = {
                    h: gid
                    for gid, h in store.con.execute(
                        "SELECT id, content_hash FROM generations WHERE prompt_id = ?", [prompt_id]
                    ).fetchall()
                }
                ranking = store._first(
                    "SELECT r.id FROM rankings r JOIN users u ON u.id = r.user_id "
                    "WHERE r.prompt_id = ? AND u.name = ? AND r.source = 'arena'",
                    [prompt_id, user["name"]],
                )
                vote_id = store.con.execute(
                    "INSERT INTO arena_votes (prompt_id, model_a, model_b, generation_a, generation_b, winner, "
                    "identity_leak, rag_collection, user_id, metadata, created_by) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                    [
                        prompt_id,
                        battle["model_a"],
                        battle["model_b"],
                        gen_ids[text_hash(text_a)],
                        gen_ids[text_hash(text_b)],
                        winner,
                        battle["identity_leak"],
                        battle["rag_collection"],
                        user.get("id"),
                        json.dumps({**meta, "ranking_added": counts.rankings > 0}, ensure_ascii=False),
                        user["name"],
                    ],
                ).fetchall()[0][0]
                store.con.execute("UPDATE arena_battles SET voted = true WHERE id = ?", [battle_id])
        finally:
            for name in STAGE_SCHEMAS:
                store.con.unregister(name)
    return {
        "vote_id": vote_id,
        "ranking_id": ranking[0] if ranking and counts.rankings else None,
        "pairs": counts.pairs,
        "prompt_id": prompt_id,
    }


VOTE_SOURCES = ("human", "synthetic", "all")
# who cast a vote, from the voter's user row: people (kind 'human'), or the loop's rule-based judge ('synthetic')
_VOTER_KIND = {"human": "u.kind = 'human'", "synthetic": "u.kind = 'synthetic'", "all": "true"}


def _vote_filter(source: str, exclude_flagged: bool) -> str:
    if source not in VOTE_SOURCES:
        raise InputError(f"source must be one of {', '.join(VOTE_SOURCES)}, got '{source}'", field="source")
    return _VOTER_KIND[source] + (" AND NOT v.identity_leak" if exclude_flagged else "")


# A vote's category: the prompt's own (metadata "category", else its first "tags" entry), else its dataset
_CATEGORY = "coalesce(p.metadata->>'$.category', p.metadata->>'$.tags[0]', d.name, 'uncategorised')"


def list_votes(
    store: Store,
    *,
    exclude_flagged: bool = False,
    source: str = "human",
    texts: bool = False,
    category: str | None = None,
) -> list[dict]:
    """Votes in the order cast: model_a, model_b, winner, identity_leak, voter (the user's name) and category
    (what the ratings need). `source`: whose votes: people's (the default; the human leaderboard), the loop's
    synthetic judge, or all. `texts`: also text_a and text_b, the two answers voted on ('' where a vote has none
    stored), for style control. `category`: only the votes of that category (see vote_categories)."""
    extra = ""
    if texts:
        extra = ", coalesce(ga.text, '') AS text_a, coalesce(gb.text, '') AS text_b"
    where = _vote_filter(source, exclude_flagged) + (f" AND {_CATEGORY} = ?" if category is not None else "")
    return store.query(
        f"SELECT v.id, v.model_a, v.model_b, v.winner, v.identity_leak, u.name AS voter, {_CATEGORY} AS category"
        f"{extra} FROM arena_votes v LEFT JOIN users u ON u.id = v.user_id "
        "LEFT JOIN prompts p ON p.id = v.prompt_id LEFT JOIN datasets d ON d.id = p.dataset_id "
        "LEFT JOIN generations ga ON ga.id = v.generation_a LEFT JOIN generations gb ON gb.id = v.generation_b "
        f"WHERE {where} ORDER BY v.id",
        [category] if category is not None else [],
    )


def vote_categories(store: Store, *, source: str = "human") -> list[dict]:
    """[{category, votes}] of the votes of `source`, most votes first."""
    return store.query(
        f"SELECT {_CATEGORY} AS category, count(*) AS votes FROM arena_votes v LEFT JOIN users u ON u.id = v.user_id "
        "LEFT JOIN prompts p ON p.id = v.prompt_id LEFT JOIN datasets d ON d.id = p.dataset_id "
        f"WHERE {_vote_filter(source, False)} GROUP BY 1 ORDER BY votes DESC, category"
    )


def votes_today(store: Store, user_id: int, now) -> int:
    """How many arena votes the user cast since midnight of `now` (local server time)."""
    midnight = now.replace(hour=0, minute=0, second=0, microsecond=0)
    return store.scalar("SELECT count(*) FROM arena_votes WHERE user_id = ? AND created_at >= ?", [user_id, midnight])


def vote_counts(store: Store, *, source: str = "human") -> dict:
    """{votes, flagged} among the votes of `source`."""
    rows = store.query(
        "SELECT count(*) AS votes, count(*) FILTER (WHERE v.identity_leak) AS flagged FROM arena_votes v "
        f"LEFT JOIN users u ON u.id = v.user_id WHERE {_vote_filter(source, False)}"
    )
    return rows[0]


# ---- thumbs on one arena answer ----------------------------------------------------------------------

MAX_COMMENT = 4_000


def answer_of_battle(store: Store, battle_id: int, side: str, *, user: dict) -> int:
    """The generation id of side 'a' or 'b' of the user's own voted battle (a battle's answers are stored as
    generations when it is voted). NotFoundError for someone else's battle, ConflictError before the vote."""
    if side not in ("a", "b"):
        raise InputError(f"side is 'a' or 'b', not {side!r}", field="side")
    battle = get_battle(store, battle_id, user=user)  # NotFoundError unless it is the user's
    row = store.row(
        "SELECT generation_a, generation_b FROM arena_votes WHERE user_id = ? "
        "AND CAST(metadata->>'$.battle_id' AS BIGINT) = ? ORDER BY id DESC LIMIT 1",
        [user["id"], battle["id"]],
    )
    if row is None:
        raise ConflictError(f"battle {battle_id} has no vote yet; its answers are stored when you vote")
    return row[f"generation_{side}"]


def give_feedback(store: Store, generation_id: int, label: bool, *, user: dict, comment: str | None = None) -> dict:
    """Thumbs up (True) or down on one arena answer the user was shown: a generation of a battle they voted in.
    Stored as feedback with source 'arena'; a second call by the same user on the same answer replaces the first.
    NotFoundError for an answer that is not from one of the user's battles (someone else's looks like none)."""
    if not isinstance(label, bool):
        raise InputError("label is true (thumbs up) or false (thumbs down)", field="label")
    if comment is not None and len(comment) > MAX_COMMENT:
        raise InputError(f"too long ({len(comment)} characters; at most {MAX_COMMENT})", field="comment")
    with store.transaction() as c:
        row = c.execute(
            "SELECT prompt_id FROM arena_votes WHERE user_id = ? AND (generation_a = ? OR generation_b = ?) LIMIT 1",
            [user["id"], generation_id, generation_id],
        ).fetchall()
        if not row:
            raise NotFoundError(f"no arena answer with id {generation_id} of yours")
        prompt_id = c.execute("SELECT prompt_id FROM generations WHERE id = ?", [generation_id]).fetchall()[0][0]
        fid = c.execute(
            "INSERT INTO feedback (prompt_id, generation_id, user_id, label, source, comment, created_by) "
            "VALUES (?, ?, ?, ?, 'arena', ?, ?) ON CONFLICT (generation_id, user_id, source_record) "
            "DO UPDATE SET label = excluded.label, comment = excluded.comment, source = excluded.source, "
            "created_at = now() RETURNING id",
            [prompt_id, generation_id, user["id"], label, comment, user["name"]],
        ).fetchall()[0][0]
    return {"id": fid, "generation_id": generation_id, "prompt_id": prompt_id, "label": label, "source": "arena"}
