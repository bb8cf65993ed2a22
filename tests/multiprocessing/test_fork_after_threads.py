"""A model trained in the parent (its optimizer using distrain's thread pool), then shared with forked
Hogwild children whose optimizers use the pool too: the children must not wait on the parent's threads,
which a fork does not copy. Before engine/threads.py forgot its pool in forked children, the child's
first step hung (this test's 120 s timeout)."""
import sys

from tests.compat.twins import environment
from tests.process_group import run_group

PROGRAM = """
import distrain
import distrain.multiprocessing as mp

def step(model):
    optimizer = distrain.optim.SGD(model.parameters(), lr=0.1)
    optimizer.zero_grad()
    model(distrain.ones(1, 1024)).sum().backward()
    optimizer.step()

if __name__ == "__main__":
    distrain.set_num_threads(2)  # a 4 MiB weight: the step goes to the pool's threads
    model = distrain.nn.Linear(1024, 1024)
    step(model)
    model.share_memory()
    before = model.bias.detach().clone()
    child = mp.get_context("fork").Process(target=step, args=(model,))
    child.start()
    child.join(60)
    assert child.exitcode == 0, child.exitcode
    print("MOVED", round((before - model.bias.detach()).mean().item(), 6))
"""


def test_forked_children_step_with_their_own_thread_pool():
    result = run_group([sys.executable, "-c", PROGRAM], timeout=120, env=environment(DISTRAIN_NUM_THREADS="2"))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "MOVED 0.1" in result.stdout  # the child's step (d loss / d bias = 1, lr 0.1) reached the shared bias
