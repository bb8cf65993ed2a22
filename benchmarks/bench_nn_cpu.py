"""Models and optimizers on the CPU: distrain.nn + distrain.optim beside torch.nn + torch.optim.

Usage (from the repository root, with the test extra installed: pip install -e ".[test]"):

    python benchmarks/bench_nn_cpu.py                   # all cores, 10 s per case
    python benchmarks/bench_nn_cpu.py --threads 1 --seconds 5 --only cnn
    python benchmarks/bench_nn_cpu.py --record          # append to benchmarks/results/<date>_<cpu>_<cores>c.jsonl

Cases (every model is built once per framework from the same weights; each step is
zero_grad, forward, loss, backward, optimizer.step):

  cnn_step          conv 3->32 (3x3, pad 1), relu, maxpool 2, conv 32->64, relu, maxpool 2,
                    linear 4096->10; batch 64 of 3x32x32; cross-entropy; SGD momentum 0.9.
                    target distrain/peer <= 1.1 (issue 15)
  resnet18_cifar_step  ResNet-18 with the CIFAR stem (3x3 conv, no max-pool), BasicBlocks with
                    BatchNorm (training mode), batch 32 of 3x32x32, cross-entropy, SGD momentum.
                    target distrain/peer <= 1.2
  mlp_sgd_momentum  784-1024-1024-10 (nn.Linear + ReLU), batch 256, cross-entropy,
                    SGD(momentum=0.9).                                 target <= 0.95
  mlp_adam          the same MLP with Adam.                             target <= 0.95
                    (the JSON's GFLOP/s for both MLP cases is to be compared with
                    matmul_f32_1024's: the target is at least 75% of that rate)
  matmul_f32_1024   the machine's float32 GEMM rate, for the line above.
  adam_25M_packed_vs_loop
                    Adam's step alone over 25.2M parameters in 100 tensors: distrain with the
                    parameters packed in one flat buffer ("distrain") against distrain's own
                    per-parameter loop ("peer" here!).              target packed/loop <= 1/3
  adam_25M_vs_torch the packed step against torch.optim.Adam (its default foreach path).
  adam_25M_10k_tensors_*  the same two comparisons with the 25.2M parameters in 10,000
                    tensors, where a per-tensor loop pays its per-call overhead 10,000 times.

How the harness alternates contenders and sets threads: benchmarks/harness.py.
"""
import itertools
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # stdlib only: numpy is imported after the thread limit is set

RESULTS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "results")


def same_weights(torch_model, distrain_model):
    """Copy torch's initial weights into the distrain model (the same starting point)."""
    import distrain

    distrain_model.load_state_dict({k: distrain.tensor(v.detach().numpy().copy())
                                    for k, v in torch_model.state_dict().items()})


def training_step(lib, model, optimizer, x, y):
    loss_fn = lib.nn.functional.cross_entropy

    def step():
        optimizer.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        optimizer.step()

    return step


def training_traffic(build_model, make_batch, optimizer_states):
    """The unavoidable memory traffic of one training step, in bytes (NOTE [ Physical limit ], harness.py).

    The model: the batch is read once; every activation that no fusion can remove (the
    output of a layer with weights or of a pooling: not of an elementwise activation, a
    residual add or a view) is written and read once forward and its gradient written and
    read once backward (4x its bytes); the parameters are read forward and backward, their
    gradient written once, and the optimizer reads the parameters, gradients and its
    `optimizer_states` state arrays and writes the parameters and states once
    ((6 + 2 * optimizer_states)x their bytes: 8x for SGD momentum, 10x for Adam).
    """
    import torch

    model = build_model(torch)
    layers = (torch.nn.Conv2d, torch.nn.Linear, torch.nn.MaxPool2d, torch.nn.BatchNorm2d, torch.nn.AdaptiveAvgPool2d)
    activation_bytes = []
    for module in model.modules():
        if isinstance(module, layers):
            module.register_forward_hook(lambda m, args, out: activation_bytes.append(out.numel() * out.element_size()))
    x, _ = make_batch()
    with torch.no_grad():
        model(torch.from_numpy(x))
    parameter_bytes = sum(p.numel() * p.element_size() for p in model.parameters())
    return 4 * sum(activation_bytes) + x.nbytes + (6 + 2 * optimizer_states) * parameter_bytes


def paired_setup(build_model, make_optimizer, make_batch):
    """Build the model in both frameworks from the same weights and return their steps."""
    import torch

    import distrain

    torch.manual_seed(0)
    torch_model = build_model(torch)
    distrain_model = build_model(distrain)
    same_weights(torch_model, distrain_model)
    x, y = make_batch()
    steps = {}
    for name, lib, model in (("distrain", distrain, distrain_model), ("peer", torch, torch_model)):
        steps[name] = training_step(lib, model, make_optimizer(lib, model), lib.tensor(x.copy()), lib.tensor(y.copy()))
    return steps


# --- (a) a small CNN -----------------------------------------------------------------------

def cnn(lib):
    nn = lib.nn
    return nn.Sequential(nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(64 * 8 * 8, 10))


def cnn_batch():
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.standard_normal((64, 3, 32, 32)).astype(np.float32), rng.integers(0, 10, 64)


def sgd_momentum(lib, model):
    return lib.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)


def adam(lib, model):
    return lib.optim.Adam(model.parameters(), lr=1e-4)


def cnn_setup():
    return paired_setup(cnn, sgd_momentum, cnn_batch)


def cnn_flops():
    conv1 = 2 * 64 * 32 * 32 * 32 * 3 * 9
    conv2 = 2 * 64 * 16 * 16 * 64 * 32 * 9
    linear = 2 * 64 * 4096 * 10
    return 2 * conv1 + 3 * conv2 + 3 * linear  # conv1 needs no input gradient


# --- (a2) ResNet-18 on CIFAR-shaped data ---------------------------------------------------

RESNET_BATCH = 32


def resnet18_cifar(lib):
    """ResNet-18 with the CIFAR stem (3x3 conv, no max-pool), 10 classes, written once for both frameworks."""
    nn = lib.nn

    class BasicBlock(nn.Module):
        def __init__(self, in_channels, planes, stride):
            super().__init__()
            self.conv1 = nn.Conv2d(in_channels, planes, 3, stride=stride, padding=1, bias=False)
            self.bn1 = nn.BatchNorm2d(planes)
            self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
            self.bn2 = nn.BatchNorm2d(planes)
            self.relu = nn.ReLU()
            self.downsample = None
            if stride != 1 or in_channels != planes:
                self.downsample = nn.Sequential(nn.Conv2d(in_channels, planes, 1, stride=stride, bias=False),
                                                nn.BatchNorm2d(planes))

        def forward(self, x):
            identity = x if self.downsample is None else self.downsample(x)
            out = self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))
            return self.relu(out + identity)

    layers, in_channels = [nn.Conv2d(3, 64, 3, padding=1, bias=False), nn.BatchNorm2d(64), nn.ReLU()], 64
    for index, planes in enumerate((64, 128, 256, 512)):
        layers += [BasicBlock(in_channels, planes, 1 if index == 0 else 2), BasicBlock(planes, planes, 1)]
        in_channels = planes
    layers += [nn.AdaptiveAvgPool2d((1, 1)), nn.Flatten(), nn.Linear(512, 10)]
    return nn.Sequential(*layers)


def resnet_batch():
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.standard_normal((RESNET_BATCH, 3, 32, 32)).astype(np.float32), rng.integers(0, 10, RESNET_BATCH)


def resnet_flops():
    """Multiply-adds of the convolutions and the head, x2 for FLOPs, x3 for forward + both gradients."""
    macs, size, in_channels = 3 * 64 * 9 * 32 * 32, 32, 64
    for index, planes in enumerate((64, 128, 256, 512)):
        if index:
            size //= 2
            macs += in_channels * planes * size * size  # the 1x1 projection
        macs += (in_channels + 3 * planes) * planes * 9 * size * size
        in_channels = planes
    return 2 * 3 * RESNET_BATCH * (macs + 512 * 10)


# --- (b) the MLP with an optimizer --------------------------------------------------------

MLP_SIZES, MLP_BATCH = (784, 1024, 1024, 10), 256


def mlp(lib):
    nn = lib.nn
    return nn.Sequential(nn.Linear(784, 1024), nn.ReLU(), nn.Linear(1024, 1024), nn.ReLU(), nn.Linear(1024, 10))


def mlp_batch():
    import numpy as np

    rng = np.random.default_rng(0)
    return rng.standard_normal((MLP_BATCH, 784)).astype(np.float32), rng.integers(0, 10, MLP_BATCH)


def mlp_flops():
    return 3 * 2 * MLP_BATCH * sum(a * b for a, b in itertools.pairwise(MLP_SIZES))


def matmul_setup():
    import numpy as np
    import torch

    import distrain

    rng = np.random.default_rng(0)
    a, b = (rng.standard_normal((1024, 1024)).astype(np.float32) for _ in range(2))
    da, db = distrain.tensor(a), distrain.tensor(b)
    ta, tb = torch.from_numpy(a.copy()), torch.from_numpy(b.copy())
    return {"distrain": lambda: da.mm(db), "peer": lambda: ta.mm(tb)}


# --- (c) the optimizer step alone ---------------------------------------------------------

# 25.2M parameters either in 100 tensors (50 weights of 500x1000, 50 biases of 4000) or in
# 10,000 tensors (5,000 weights of 50x100, 5,000 biases of 40): the same arithmetic, 100x the tensors.
OPTIMIZER_MODELS = {100: (50, (500, 1000), (4000,)), 10_000: (5000, (50, 100), (40,))}


def optimizer_parameters(lib, rng, tensors=100):
    pairs, weight_shape, bias_shape = OPTIMIZER_MODELS[tensors]
    parameters = []
    for _ in range(pairs):
        for shape in (weight_shape, bias_shape):
            value = lib.tensor(rng.standard_normal(shape).astype("float32"))
            parameter = lib.nn.Parameter(value)
            parameter.grad = lib.tensor(rng.standard_normal(shape).astype("float32") * 1e-3)
            parameters.append(parameter)
    return parameters


def adam_step_setup(packed_peer, tensors=100):
    import numpy as np

    import distrain

    rng = np.random.default_rng(0)
    packed = optimizer_parameters(distrain, rng, tensors)
    steps = {"distrain": _optimizer_step(distrain.optim.Adam(packed, lr=1e-4, packed=True))}
    if packed_peer:
        loop = optimizer_parameters(distrain, np.random.default_rng(0), tensors)
        steps["peer"] = _optimizer_step(distrain.optim.Adam(loop, lr=1e-4, packed=False))
    else:
        import torch

        peer = optimizer_parameters(torch, np.random.default_rng(0), tensors)
        steps["peer"] = _optimizer_step(torch.optim.Adam(peer, lr=1e-4))
    return steps


def _optimizer_step(optimizer):
    def step():
        optimizer.step()  # the gradients stay: each call is one full update of every parameter

    return step


def main(argv=None):
    args = harness.command_line(__doc__, argv)  # sets the thread limit before anything imports numpy
    cases = [
        harness.Case("cnn_step", cnn_setup, target=1.1, flops=cnn_flops(),
                     traffic=training_traffic(cnn, cnn_batch, 1),
                     note="conv3-32,pool,conv32-64,pool,linear; batch 64x3x32x32; CE; SGD momentum"),
        harness.Case("resnet18_cifar_step", lambda: paired_setup(resnet18_cifar, sgd_momentum, resnet_batch),
                     target=1.2, flops=resnet_flops(), traffic=training_traffic(resnet18_cifar, resnet_batch, 1),
                     note=f"ResNet-18, CIFAR stem, batch {RESNET_BATCH}x3x32x32, BatchNorm in training mode, CE, "
                          "SGD momentum"),
        harness.Case("mlp_sgd_momentum", lambda: paired_setup(mlp, sgd_momentum, mlp_batch), target=0.95,
                     flops=mlp_flops(), traffic=training_traffic(mlp, mlp_batch, 1),
                     note="nn.Sequential 784-1024-1024-10, batch 256, CE, SGD momentum 0.9"),
        harness.Case("mlp_adam", lambda: paired_setup(mlp, adam, mlp_batch), target=0.95, flops=mlp_flops(),
                     traffic=training_traffic(mlp, mlp_batch, 2),
                     note="nn.Sequential 784-1024-1024-10, batch 256, CE, Adam"),
        harness.Case("matmul_f32_1024", matmul_setup, flops=2 * 1024 ** 3,
                     note="float32 1024x1024 @ 1024x1024: the GEMM rate the MLP cases are measured against"),
        harness.Case("adam_25M_packed_vs_loop", lambda: adam_step_setup(packed_peer=True), target=1 / 3,
                     note="Adam step, 25.2M params in 100 tensors; peer = distrain's per-parameter loop"),
        harness.Case("adam_25M_vs_torch", lambda: adam_step_setup(packed_peer=False),
                     note="Adam step, 25.2M params in 100 tensors; distrain packed vs torch.optim.Adam"),
        harness.Case("adam_25M_10k_tensors_packed_vs_loop", lambda: adam_step_setup(True, tensors=10_000),
                     target=1 / 3, note="Adam step, 25.2M params in 10,000 tensors; peer = the per-parameter loop"),
        harness.Case("adam_25M_10k_tensors_vs_torch", lambda: adam_step_setup(False, tensors=10_000),
                     note="Adam step, 25.2M params in 10,000 tensors; distrain packed vs torch.optim.Adam"),
    ]
    harness.run_selected(cases, args, RESULTS_DIR)


if __name__ == "__main__":
    main()
