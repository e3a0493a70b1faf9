import onnx
import pytest
from torch import nn

from rbench.export.names import file_modules
from rbench.models import create_model
from rbench.models.layers import block_of, module_of, stage_of, stage_order
from rbench.precisions import EXPORTED

MODULES = {name for name, _ in create_model("resnet50").named_modules()}


@pytest.mark.parametrize(
    ("name", "module"),
    [
        ("/layer1/layer1.0/conv1/Conv", "layer1.0.conv1"),
        ("/layer1/layer1.0/relu_1/Relu", "layer1.0.relu"),
        ("/layer1/layer1.0/Add", "layer1.0"),
        ("/layer3/layer3.0/downsample/downsample.0/Conv", "layer3.0.downsample.0"),
        ("layer2.1.conv2.weight_DequantizeLinear", "layer2.1.conv2"),
        ("/layer4/layer4.2/conv3/Conv/WithoutBiases", "layer4.2.conv3"),
        ("/conv1/Conv/WithoutBiases_f32_u8_/layer1/layer1.0/conv1/Conv/WithoutBiases", "layer1.0.conv1"),
        ("/Flatten", ""),
        ("Identity_3", ""),
    ],
)
def test_module_of_reads_every_naming_back_to_the_module(name, module):
    assert module_of(name, MODULES) == module


def test_stages_and_blocks():
    assert [stage_of(m) for m in ("conv1", "maxpool", "layer3.4.conv2", "fc", "avgpool")] == [
        "stem",
        "stem",
        "layer3",
        "head",
        "head",
    ]
    assert stage_of("", "before") == "stem" and stage_of("") == "head"
    assert block_of("layer2.3.bn1") == "layer2.3" and block_of("fc") == "head"
    assert stage_order({"head", "layer10", "layer2", "stem"}) == ["stem", "layer2", "layer10", "head"]


def test_export_keeps_module_paths_in_node_names(resnet20_all):
    model = onnx.load(str(resnet20_all.path / "model.onnx"))
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    assert convs[:3] == ["/conv1/Conv", "/layer1/layer1.0/conv1/Conv", "/layer1/layer1.0/conv2/Conv"]


def test_every_conv_of_every_variant_maps_to_its_module(resnet20_all):
    torch_model = create_model("resnet20")
    convs = {name for name, m in torch_model.named_modules() if isinstance(m, nn.Conv2d)}
    manifest = resnet20_all.manifest
    assert set(manifest["precisions"]) == set(EXPORTED)
    for precision, entry in manifest["precisions"].items():
        modules = entry["modules"]
        names = set(dict(torch_model.named_modules()))
        assert modules == file_modules(resnet20_all.path / entry["file"], names)
        if entry["file"].endswith(".xml"):
            import openvino as ov

            ops = ov.Core().read_model(str(resnet20_all.path / entry["file"])).get_ordered_ops()
            conv_nodes = [op.get_friendly_name() for op in ops if op.get_type_name() == "Convolution"]
        else:
            graph = onnx.load(str(resnet20_all.path / entry["file"])).graph
            conv_nodes = [n.name for n in graph.node if n.op_type == "Conv"]
        mapped = sorted(modules[n] for n in conv_nodes)
        assert mapped == sorted(convs), precision  # each convolution once, under its own module


def test_qdq_nodes_belong_to_the_layer_they_feed(resnet20_all):
    entry = resnet20_all.manifest["precisions"]["int8"]
    graph = onnx.load(str(resnet20_all.path / entry["file"])).graph
    dq = [n for n in graph.node if n.op_type == "DequantizeLinear"]
    weight_dq = [n.name for n in dq if "layer2.0.conv1.weight" in n.input[0]]
    assert [entry["modules"][n] for n in weight_dq] == ["layer2.0.conv1"]
    act_q = [n.name for n in graph.node if n.op_type == "QuantizeLinear" and n.input[0] == "input"]
    assert all(entry["modules"][n] in ("conv1", "layer1.0.conv1") for n in act_q)
