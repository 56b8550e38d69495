import pytest
import torch

from ecg_assets.core.model import ECGResNet1D, ModelConfig, build_model, count_parameters


def test_default_model_has_about_one_and_a_half_million_parameters():
    assert 1.3e6 < count_parameters(ECGResNet1D()) < 1.7e6


def test_output_shape_and_any_input_length():
    model = ECGResNet1D(ModelConfig(base_channels=8)).eval()
    for length in (5000, 1234):
        assert model(torch.randn(3, 12, length)).shape == (3, 5)


@pytest.mark.parametrize("width", [8, 16, 64])
def test_base_channels_scales_the_network(width):
    model = build_model({"base_channels": width})
    assert model.head[-1].in_features == 8 * width


def test_architecture_pieces():
    model = ECGResNet1D()
    kinds = {type(module).__name__ for module in model.modules()}
    assert {"ResidualBlock1d", "BatchNorm1d", "GELU", "AdaptiveAvgPool1d"} <= kinds
