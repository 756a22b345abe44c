"""The loop from the admin page: POST /api/loop starts `serving.loop` in a background thread of the server.

    POST /api/loop {"base_model": "models/tiny", "preset": "demo", "method": "dpo"}  -> {"id": 1, "status": ...}
    GET  /api/loop            every loop this server ran (newest first)
    GET  /api/loop/{id}       status, current step, history, headline numbers, report path
    GET  /api/loop/{id}/report          report.md as text; /api/loop/{id}/files/{name}: its SVG plots
    POST /api/loop/{id}/cancel

One loop at a time (it uses every core). The loop is a thread of the server's job runner (serving.jobs) and runs
with the server's Store, so the server keeps owning the database file; its engine is a subprocess and its training
runs are training-run jobs of the same runner, so a stopping server stops all of them. Loops are kept in memory:
the report folder (report.md, report.json) is the durable record.
"""

from __future__ import annotations

import itertools
import logging
import threading
from dataclasses import asdict

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, PlainTextResponse
from pydantic import BaseModel, Field

from db.errors import PrefLabError
from serving.api.deps import ApiError, require_role
from serving.jobs import JobKind

log = logging.getLogger(__name__)
router = APIRouter(prefix="/api", tags=["loop"])


class LoopIn(BaseModel):
    base_model: str = Field(default="models/tiny", min_length=1, max_length=1024, description="model folder")
    preset: str | None = Field(default="demo", description="demo | test; explicit fields override it")
    method: str = Field(default="dpo", pattern="^(dpo|ppo|rloo|grpo)$")
    rounds: int | None = Field(default=None, ge=1, le=20)
    train_prompts: int | None = Field(default=None, ge=1, le=5000)
    heldout_prompts: int | None = Field(default=None, ge=1, le=2000)
    n: int | None = Field(default=None, ge=2, le=16)
    max_tokens: int | None = Field(default=None, ge=1, le=4096)
    annotators: int | None = Field(default=None, ge=1, le=20)
    noise: float | None = Field(default=None, ge=0.0, le=1.0)
    learning_rate: float | None = Field(default=None, gt=0.0, le=1.0)
    epochs: float | None = Field(default=None, gt=0.0, le=100.0)
    max_steps: int | None = Field(default=None, ge=-1)
    arena_turns: int | None = Field(default=None, ge=1, le=16)
    backend: str | None = Field(default=None, pattern="^(transformers|vllm)$")
    name: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_.-]{1,64}$")
    parent_adapter: str | None = None
    seed: int | None = None


class LoopManager(JobKind):
    """The server's loops (kind "loop" of the job runner): at most one runs; each keeps its Loop object for progress.
    Loops are kept in memory, so a restart has nothing to recover here (the runs a loop started are runs)."""

    kind = "loop"

    def __init__(self, store, runner):
        self.loops: dict[int, dict] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        super().__init__(store, runner)

    def running(self) -> dict | None:
        return next((e for e in self.loops.values() if e["status"] == "running"), None)

    def start(self, body: LoopIn, user: str) -> dict:
        from serving.loop import PRESETS, Loop, LoopConfig

        values = dict(PRESETS.get(body.preset, {})) if body.preset else {}
        if body.preset and body.preset not in PRESETS:
            raise ApiError(400, f"unknown preset '{body.preset}': use one of {', '.join(PRESETS)}", field="preset")
        values.update({k: v for k, v in body.model_dump(exclude={"preset"}).items() if v is not None})
        with self._lock:
            if self.running():
                raise ApiError(409, "a loop is already running: wait for it or cancel it first", field=None)
            loop_id = next(self._ids)
            try:
                cfg = LoopConfig(**values)
            except PrefLabError as e:
                raise ApiError(400, str(e), field=None) from e
            cancel = threading.Event()
            # the loop's training runs are jobs of the same runner: a stopping server stops them too
            loop = Loop(self.store, cfg, cancel=cancel, runner=self.runner)
            entry = {"id": loop_id, "status": "running", "by": user, "loop": loop, "summary": None, "error": None}
            self.runner.start_thread(self.kind, loop_id, lambda job: self._run(entry), cancel=cancel)
            self.loops[loop_id] = entry
        return self.view(entry)

    def _run(self, entry: dict) -> None:
        try:
            entry["summary"] = entry["loop"].run()
            entry["status"] = "finished"
        except Exception as e:  # reported through GET /api/loop/{id}
            log.exception("loop %s failed", entry["id"])
            entry["error"] = str(e)
            entry["status"] = "cancelled" if entry["loop"].cancel.is_set() else "failed"

    def get(self, loop_id: int) -> dict:
        if loop_id not in self.loops:
            raise ApiError(404, f"no loop with id {loop_id} in this server's lifetime", field="id")
        return self.loops[loop_id]

    @staticmethod
    def view(entry: dict) -> dict:
        loop = entry["loop"]
        state = asdict(loop.state)
        out = {
            "id": entry["id"],
            "status": entry["status"],
            "by": entry["by"],
            "error": entry["error"],
            "step": state["step"],
            "round": state["round"],
            "detail": state["detail"],
            "history": state["history"],
            "out_dir": str(loop.out),
            "config": asdict(loop.cfg),
            "report": str(loop.out / "report.md") if (loop.out / "report.md").exists() else None,
        }
        if entry["summary"]:
            out["results"] = [
                {
                    "round": r["round"],
                    "tally": r["arena"]["tally"],
                    "mean_reward": r["arena"]["mean_reward"],
                    "style_controlled": r["arena"].get("style_controlled"),
                    "arena_vs_start": r.get("arena_vs_start"),
                    "lineage": r["lineage"],
                }
                for r in entry["summary"]["rounds"]
            ]
        return out


def _manager(request: Request) -> LoopManager:
    return request.app.state.loops


@router.post("/loop", status_code=202)
def start_loop(body: LoopIn, request: Request, user=Depends(require_role("admin"))):
    """Start a loop (admin). 409 while another one runs."""
    return _manager(request).start(body, user["name"])


@router.get("/loop")
def list_loops(request: Request, user=Depends(require_role("admin"))):
    m = _manager(request)
    return {"loops": [m.view(e) for e in sorted(m.loops.values(), key=lambda e: -e["id"])]}


@router.get("/loop/{loop_id}")
def get_loop(loop_id: int, request: Request, user=Depends(require_role("admin"))):
    m = _manager(request)
    return m.view(m.get(loop_id))


@router.get("/loop/{loop_id}/report", response_class=PlainTextResponse)
def loop_report(loop_id: int, request: Request, user=Depends(require_role("admin"))):
    path = _manager(request).get(loop_id)["loop"].out / "report.md"
    if not path.exists():
        raise ApiError(404, "no report yet: it is written after the first round", field="id")
    return PlainTextResponse(path.read_text(encoding="utf-8"), media_type="text/markdown; charset=utf-8")


@router.get("/loop/{loop_id}/files/{name}")
def loop_file(loop_id: int, name: str, request: Request, user=Depends(require_role("admin"))):
    out = _manager(request).get(loop_id)["loop"].out
    path = (out / name).resolve()
    if path.parent != out.resolve() or not path.is_file() or path.suffix not in (".svg", ".json", ".md"):
        raise ApiError(404, f"no report file '{name}'", field="name")
    return FileResponse(path)


@router.post("/loop/{loop_id}/cancel")
def cancel_loop(loop_id: int, request: Request, user=Depends(require_role("admin"))):
    m = _manager(request)
    entry = m.get(loop_id)
    m.cancel(loop_id)  # a loop that has ended stays as it was
    return m.view(entry)
