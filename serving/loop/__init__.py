"""The closed loop in one call: sample -> rank (synthetic annotators) -> pairs -> snapshot -> train -> arena ->
report, for `preflab loop`, POST /api/loop and bench/loop.py. It owns the loop's prompts (prompts.py), its settings
and presets (config.py), the order of a round (orchestrator.py), its training step (training.py: runs started
through alignment.launch under a job runner, like every training run) and its rule-judged arena (arena.py). It
never writes SQL (db/ does), never trains in its own process, and never leaves its engine or a training job
running after it returns.

    summary = run_loop(store, LoopConfig(base_model="models/tiny", **PRESETS["demo"]))
"""

from serving.loop.arena import store_votes
from serving.loop.config import PRESETS, LoopConfig, LoopState
from serving.loop.orchestrator import Loop, run_loop
from serving.loop.prompts import add_prompts, make_prompts

__all__ = ["PRESETS", "Loop", "LoopConfig", "LoopState", "add_prompts", "make_prompts", "run_loop", "store_votes"]
