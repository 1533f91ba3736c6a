"""``clipwhisper train`` with its CUDA graphs counted, or with none captured: the trainer's own use of them.

    python benchmarks/graphs_train.py on  train -c tiny --data-path CORPUS --output-path /tmp/on  --seed 0
    python benchmarks/graphs_train.py off train -c tiny --data-path CORPUS --output-path /tmp/off --seed 0

Everything after the first argument goes to the ``clipwhisper`` command. ``off`` adds ``--no-cuda-graphs``,
so no graph is captured and every step runs kernel by kernel. At exit it prints, per kind of graph and
module, how many graphs were captured and how many calls a graph served. Graphs apply on a GPU only, to frozen
encoders and a LoRA or frozen LLM: e.g. ``CLIPWHISPER_MODEL__LLM__FINETUNE=lora
CLIPWHISPER_MODEL__AUDIO_ENCODER__TRAINABLE=false CLIPWHISPER_MODEL__VIDEO_ENCODER__TRAINABLE=false``.
Compare the two runs' ``train_log.jsonl`` losses (docs/developers.md has the whole GPU recipe).
"""

from __future__ import annotations

import atexit
import collections
import sys

from clipwhisper.cli import app
from clipwhisper.model import graphs

captured: collections.Counter = collections.Counter()
served: collections.Counter = collections.Counter()
_graph = graphs._PerShape._graph


def counted_graph(self, key, capture):
    name = f"{type(self).__name__}/{type(self.module).__name__}"

    def counted_capture():
        captured[name] += 1
        return capture()

    graph = _graph(self, key, counted_capture)
    served[name] += graph is not None
    return graph


def main() -> None:
    mode = sys.argv.pop(1) if len(sys.argv) > 1 else None
    if mode not in ("on", "off"):
        print("graphs_train.py: error: the first argument must be on or off", file=sys.stderr)
        sys.exit(2)  # a usage error, as clipwhisper's own
    if mode == "off":
        sys.argv.append("--no-cuda-graphs")
    graphs._PerShape._graph = counted_graph
    atexit.register(lambda: print(f"graphs captured {dict(captured)}; calls served {dict(served)}", flush=True))
    app(prog_name="clipwhisper")


if __name__ == "__main__":
    main()
