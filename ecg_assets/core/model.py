"""ECGResNet1D: a 1D residual network for 12-lead ECG classification.

Shapes of the product model (`TrainingConfig().architecture()`: 12 leads, 5000 samples,
base_channels=32, the 25 rhythm features)::

    input            [B, 12, 5000]
    stem             [B, 32, 313]    conv k31 s8 -> BN -> GELU -> max-pool s2
    stage 1          [B, 32, 313]    2 residual blocks
    stage 2          [B, 64, 157]    2 residual blocks, first one strided
    stage 3          [B, 128, 79]
    stage 4          [B, 256, 40]
    pool             [B, 256]        adaptive average pool
    rhythm branch    [B, 25] -> [B, 225] -> [B, 64]   BatchNorm + 8 Gaussian bumps per feature -> 2-layer GELU MLP
    head             [B, 256 + 64] -> [B, num_classes]   dropout -> linear

`rhythm_features: 0` drops the branch (`forward(x)`); otherwise `forward(x, rhythm)` takes the
record-level vector of `core.rhythm`. `stage_channels` sets every stage's width explicitly
(default: `base_channels` doubling). 1.61M parameters.

`core.training.TrainingConfig` is the one place a product model's architecture is chosen (its
`architecture()` fills every field). The defaults here matter only for checkpoints written before
a field existed: each added field defaults to the value that rebuilds those older networks.
"""

from __future__ import annotations

import torch
from pydantic import BaseModel, Field
from torch import nn


class ModelConfig(BaseModel):
    """Architecture hyper-parameters; stored in every checkpoint."""

    in_leads: int = 12
    num_classes: int = 5
    base_channels: int = Field(32, ge=4, description="Width of the first stage; later stages double it.")
    blocks_per_stage: tuple[int, ...] = (2, 2, 2, 2)
    kernel_size: int = Field(5, ge=3, description="Odd kernel size of the residual convolutions.")
    stem_kernel_size: int = 31
    stem_stride: int = Field(8, ge=1, description="Stride of the stem convolution (the max-pool halves again).")
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    stage_channels: tuple[int, ...] | None = Field(
        None, description="Width of each stage (one per entry of blocks_per_stage); None: base_channels doubling."
    )
    stem_channels: int | None = Field(None, ge=4, description="Width of the stem (None: the first stage's).")
    rhythm_features: int = Field(0, ge=0, description="Length of the record-level feature vector fused (0: none).")
    rhythm_hidden: int = Field(32, ge=1, description="Width of the feature MLP fused with the pooled embedding.")
    rhythm_rbf: int = Field(
        0,
        ge=0,
        description="Encode each standardised feature also by this many Gaussian bumps at fixed positions "
        "before the MLP (0: the features as they are). Lets a small MLP draw thresholds the way trees do.",
    )
    rhythm_head: bool = Field(
        False, description="Also classify from the feature MLP alone (an auxiliary output for training)."
    )

    def widths(self) -> list[int]:
        """The width of every stage."""
        if self.stage_channels is not None:
            if len(self.stage_channels) != len(self.blocks_per_stage):
                raise ValueError("stage_channels needs one width per entry of blocks_per_stage")
            return list(self.stage_channels)
        return [self.base_channels * 2**index for index in range(len(self.blocks_per_stage))]


class RadialEncoding(nn.Module):
    """Standardise each feature (BatchNorm statistics, no affine), then append `centers` Gaussian bumps
    per feature, at fixed positions over [-2.5, 2.5] standard deviations: `[B, n] -> [B, n * (1 + centers)]`."""

    def __init__(self, features: int, centers: int, width: float = 0.6):
        super().__init__()
        self.norm = nn.BatchNorm1d(features, affine=False)
        self.register_buffer("centers", torch.linspace(-2.5, 2.5, centers))
        self.width = width

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.norm(x)
        bumps = torch.exp(-0.5 * ((z[:, :, None] - self.centers) / self.width) ** 2)
        return torch.cat([z, bumps.flatten(1)], dim=1)


class ResidualBlock1d(nn.Module):
    """conv-BN-GELU-conv-BN plus a (projected when needed) shortcut, then GELU."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, stride: int = 1):
        super().__init__()
        padding = kernel_size // 2
        self.conv1 = nn.Conv1d(in_channels, out_channels, kernel_size, stride, padding, bias=False)
        self.bn1 = nn.BatchNorm1d(out_channels)
        self.conv2 = nn.Conv1d(out_channels, out_channels, kernel_size, 1, padding, bias=False)
        self.bn2 = nn.BatchNorm1d(out_channels)
        self.act = nn.GELU()
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv1d(in_channels, out_channels, 1, stride, bias=False), nn.BatchNorm1d(out_channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.act(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.act(out + self.shortcut(x))


def _stage(in_channels: int, out_channels: int, blocks: int, kernel_size: int, stride: int) -> nn.Sequential:
    layers = [ResidualBlock1d(in_channels, out_channels, kernel_size, stride)]
    layers += [ResidualBlock1d(out_channels, out_channels, kernel_size) for _ in range(blocks - 1)]
    return nn.Sequential(*layers)


class ECGResNet1D(nn.Module):
    """Stem, four residual stages (width doubling, length halving), global pooling, linear head."""

    def __init__(self, config: ModelConfig | None = None):
        super().__init__()
        config = config or ModelConfig()
        self.config = config
        widths = config.widths()
        width = config.stem_channels or widths[0]
        self.stem = nn.Sequential(
            nn.Conv1d(
                config.in_leads,
                width,
                config.stem_kernel_size,
                config.stem_stride,
                config.stem_kernel_size // 2,
                bias=False,
            ),
            nn.BatchNorm1d(width),
            nn.GELU(),
            nn.MaxPool1d(kernel_size=3, stride=2, padding=1),
        )
        stages: list[nn.Module] = []
        in_channels = width
        for index, (blocks, out_channels) in enumerate(zip(config.blocks_per_stage, widths)):
            stages.append(_stage(in_channels, out_channels, blocks, config.kernel_size, 1 if index == 0 else 2))
            in_channels = out_channels
        self.stages = nn.Sequential(*stages)
        self.pool = nn.AdaptiveAvgPool1d(1)
        self.rhythm: nn.Module | None = None
        embedding = in_channels
        if config.rhythm_features:
            hidden, encoded = config.rhythm_hidden, config.rhythm_features * (1 + config.rhythm_rbf)
            self.rhythm = nn.Sequential(
                # Normalisation statistics are BatchNorm running statistics: they travel in the checkpoint.
                RadialEncoding(config.rhythm_features, config.rhythm_rbf)
                if config.rhythm_rbf
                else nn.BatchNorm1d(config.rhythm_features),
                nn.Linear(encoded, hidden),
                nn.GELU(),
                nn.Linear(hidden, hidden),
                nn.GELU(),
            )
            embedding += hidden
        self.rhythm_head = nn.Linear(config.rhythm_hidden, config.num_classes) if config.rhythm_head else None
        self.head = nn.Sequential(nn.Flatten(), nn.Dropout(config.dropout), nn.Linear(embedding, config.num_classes))
        self._init_weights()

    def _init_weights(self) -> None:
        for module in self.modules():
            if isinstance(module, nn.Conv1d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm1d) and module.affine:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
        # Zero the last BN of each residual branch: every block starts as an identity.
        for module in self.modules():
            if isinstance(module, ResidualBlock1d):
                nn.init.zeros_(module.bn2.weight)

    def forward(
        self, x: torch.Tensor, rhythm: torch.Tensor | None = None, auxiliary: bool = False
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        """`x`: `[batch, in_leads, samples]` (and `rhythm`: `[batch, rhythm_features]` when the model
        fuses record-level features) -> logits `[batch, num_classes]`; with `auxiliary` (models with a
        `rhythm_head`), also the logits of the features alone (a training target of their own)."""
        embedding = self.pool(self.stages(self.stem(x))).flatten(1)
        features = None
        if self.rhythm is not None:
            if rhythm is None:
                raise ValueError(f"this model needs the {self.config.rhythm_features} record-level features")
            features = self.rhythm(rhythm.to(embedding.dtype))
            embedding = torch.cat([embedding, features], dim=1)
        logits = self.head(embedding)
        if auxiliary:
            if self.rhythm_head is None or features is None:
                raise ValueError("auxiliary logits need a model with rhythm_features and rhythm_head")
            return logits, self.rhythm_head(features)
        return logits


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters."""
    return sum(parameter.numel() for parameter in model.parameters() if parameter.requires_grad)


def build_model(config: ModelConfig | dict | None = None) -> ECGResNet1D:
    """An `ECGResNet1D` from a config or its dict form (as stored in checkpoints)."""
    if isinstance(config, dict):
        config = ModelConfig(**config)
    return ECGResNet1D(config)
