"""Single-process PyTorch programs in the styles of pytorch/examples (regression, vae, time_sequence_prediction,
word_language_model, mnist, mnist_rnn) give PyTorch's numbers with only their imports changed (tests/compat/twins.py):
every printed loss, test loss, correct count and learning rate, at float32 tolerance (float64 for the L-BFGS one)."""
import sys

import pytest

from tests.compat.twins import assert_same_numbers, distrain_twin, numbers, program, run

CASES = {  # program, its arguments, what it prints: (tag, fields before the value)
    "regression": ("regression_poly.py", ["200"], (("LOSS", 1), ("WEIGHT", 1))),
    "vae": ("vae.py", ["3"], (("LOSS", 2), ("TEST", 1))),
    "time_sequence_lbfgs": ("time_sequence_lbfgs.py", ["3"], (("LOSS", 2), ("TEST", 1))),
    "word_language_model": ("word_language_model.py", ["2"], (("LOSS", 2), ("VALID", 1), ("PPL", 1))),
    "mnist_cnn": ("mnist_styles.py", ["cnn", "3"], (("LOSS", 2), ("TEST", 1), ("CORRECT", 1), ("LR", 1))),
    "mnist_rnn": ("mnist_styles.py", ["rnn", "3"], (("LOSS", 2), ("TEST", 1), ("CORRECT", 1), ("LR", 1))),
}


@pytest.mark.timeout(240)
@pytest.mark.parametrize("case", list(CASES))
def test_the_program_gives_pytorchs_numbers(case, tmp_path):
    name, arguments, printed = CASES[case]
    theirs = run([sys.executable, program(name), *arguments], oracle=True)
    ours = run([sys.executable, distrain_twin(name, tmp_path), *arguments])
    for tag, fields in printed:
        assert_same_numbers(numbers(ours, tag, fields), numbers(theirs, tag, fields), f"{case}: {tag}")
