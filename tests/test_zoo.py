"""The networks users hold, by name: torchvision and timm models built with their zoos'
conventions, searched, or refused in one line. Random weights; nothing is downloaded."""

import importlib.util
import json

import pytest
import torch
from torch import nn

from conftest import in_process, write_mnist_like
from netadjust.cost import count
from test_cli import assert_user_error

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("torchvision") is None or importlib.util.find_spec("timm") is None,
    reason="the zoos are not installed (pip install 'netadjust[zoo]')",
)


def inspected(*flags) -> dict:
    result = in_process("inspect", *flags, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def test_a_torchvision_model_by_name_reads_the_datas_channels_and_classes():
    found = inspected("--model", "torchvision:resnet18")  # Fashion-MNIST's 1x28x28, 10 classes
    from netadjust.factories import import_zoo

    reference = import_zoo("torchvision").models.resnet18(num_classes=10)
    reference.conv1 = nn.Conv2d(1, 64, 7, 2, 3, bias=False)  # the stem made for one channel
    expected = count(reference.eval(), (1, 28, 28))
    assert (found["macs"], found["params"]) == (expected.macs, expected.params)
    assert found["widths"]["conv1"] == 64 and len(found["widths"]) > 10
    # listed by name, and a misspelled name answered with the closest ones
    names = in_process("inspect", "--model", "torchvision:").stdout.split()
    assert "torchvision:resnet18" in names and "torchvision:mobilenet_v3_small" in names
    assert_user_error(in_process("inspect", "--model", "torchvision:resnet81"), "did you mean resnet18")


def test_a_timm_model_by_name_takes_in_chans_and_model_args():
    found = inspected("--model", "timm:resnet10t", "--model-args", '{"drop_path_rate": 0.1}')
    from netadjust.factories import import_zoo

    reference = import_zoo("timm").create_model("resnet10t", num_classes=10, in_chans=1)
    assert found["macs"] == count(reference.eval(), (1, 28, 28)).macs


def test_factories_get_in_channels_only_where_they_name_it_and_a_wrong_stem_is_one_line():
    # torchvision's builders take **kwargs: handed in_channels, they failed inside the model
    refused = in_process("inspect", "--model", "torchvision.models:resnet18")
    assert_user_error(refused, "reads 3 channels, the data has 1", "--model torchvision:resnet18")


def test_what_a_model_cannot_do_is_refused_in_one_line():
    too_small = in_process("inspect", "--model", "torchvision:densenet121")
    assert_user_error(too_small, "cannot run on 1x28x28 inputs", "--image-size 32")
    assert inspected("--model", "torchvision:squeezenet1_1", "--image-size", 64)["macs"] > 0
    shuffled = in_process("inspect", "--model", "torchvision:shufflenet_v2_x0_5")
    assert_user_error(shuffled, "dependency graph fails", "refusing it")


def test_a_training_forward_with_auxiliary_outputs_is_refused_by_name(tmp_path):
    (tmp_path / "aux.py").write_text(
        "import torch\nfrom torch import nn\n\n"
        "class Net(nn.Module):\n"
        "    def __init__(self, num_classes, in_channels):\n"
        "        super().__init__()\n"
        "        self.body = nn.Sequential(nn.Conv2d(in_channels, 8, 3), nn.BatchNorm2d(8), nn.ReLU(),\n"
        "                                  nn.AdaptiveAvgPool2d(1), nn.Flatten())\n"
        "        self.head, self.aux = nn.Linear(8, num_classes), nn.Linear(8, num_classes)\n"
        "    def forward(self, x):\n"
        "        x = self.body(x)\n"
        "        return (self.head(x), self.aux(x)) if self.training else self.head(x)\n\n"
        "def net(num_classes, in_channels):\n    return Net(num_classes, in_channels)\n"
    )
    refused = in_process("inspect", "--model", f"{tmp_path / 'aux.py'}:net")
    assert_user_error(refused, "returns a tuple in training", "aux_logits")


def test_a_zoo_model_is_searched_as_typed_at_a_resized_input(tmp_path):
    data = write_mnist_like(tmp_path / "data", n_train=120, n_test=20)
    out = tmp_path / "run"
    result = in_process(
        "search", "--model", "torchvision:mobilenet_v3_small", "--dataset", "mnist", "--data-dir", data,
        "--image-size", 32, "--iterations", 1, "--epochs", 1, "--repeats", 1, "--batch-size", 40,
        "--out", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    final = json.loads((out / "final.json").read_text())
    assert final["model"]["model"] == "torchvision:mobilenet_v3_small" and final["model"]["image_size"] == 32
    assert final["widths"] != final["original_widths"]
    assert abs(final["macs"] / final["original_macs"] - 1) <= 0.011
    # the run rebuilds it by name: the searched network at the recorded input
    from netadjust import build

    model = build("model", out / "final.json").eval()
    assert model(torch.zeros(2, 1, 32, 32)).shape == (2, 10)
