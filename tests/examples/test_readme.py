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


def test_the_data_example_yields_what_its_comment_says(tmp_path, monkeypatch):
    """float32 images of (64, 3, 32, 32) and int64 labels: a float32 model refuses float64 input."""
    monkeypatch.chdir(tmp_path)
    with open(README, encoding="utf-8") as readme:
        (block,) = [b for b in re.findall(r"```python\n(.*?)```", readme.read(), flags=re.S) if "write_shards" in b]
    namespace = {}
    exec(compile(block, "README.md", "exec"), namespace)
    batches = iter(namespace["loader"])
    first = next(batches)
    del batches  # stops the loader's workers now
    assert "float32 (64, 3, 32, 32), int64 (64,)" in block
    assert (first["image"].dtype, tuple(first["image"].shape)) == (distrain.float32, (64, 3, 32, 32))
    assert (first["label"].dtype, tuple(first["label"].shape)) == (distrain.int64, (64,))
