"""README's Python examples run as written (a newcomer copies them first)."""
import os
import re

import distrain

README = os.path.join(os.path.dirname(__file__), "..", "..", "README.md")


def test_readme_python_blocks_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the checkpoint example writes ckpt.dt into the working directory
    with open(README, encoding="utf-8") as readme:
        blocks = re.findall(r"```python\n(.*?)```", readme.read(), flags=re.S)
    assert len(blocks) >= 2
    namespace = {}  # one session, as a reader running the tour top to bottom
    try:
        for block in blocks:
            exec(compile(block, "README.md", "exec"), namespace)
    finally:
        distrain.distributed.shutdown()  # the tour joins a (local) process group; leave it for other tests
    assert (tmp_path / "ckpt.dt").exists()
