"""Random weights that make a GPT-J's layers matter (HF's std-0.02 init leaves every block close
to the identity), for the demo model and the test models."""
from __future__ import annotations


def redraw_weights(model, generator, bias_std: float = 0.1, ln_std: float = 0.1) -> None:
    """Linear weights ~ N(0, 1/fan_in), biases ~ N(0, bias_std), embeddings ~ N(0, 1), layer norms
    1 + N(0, ln_std) with biases ~ N(0, bias_std); drawn in module order from `generator`."""
    import torch

    with torch.no_grad():
        for mod in model.modules():
            if isinstance(mod, torch.nn.Linear):
                mod.weight.normal_(0.0, mod.in_features ** -0.5, generator=generator)
                if mod.bias is not None:
                    mod.bias.normal_(0.0, bias_std, generator=generator)
            elif isinstance(mod, torch.nn.Embedding):
                mod.weight.normal_(0.0, 1.0, generator=generator)
            elif isinstance(mod, torch.nn.LayerNorm):
                mod.weight.copy_(1.0 + ln_std * torch.randn(mod.weight.shape, generator=generator))
                mod.bias.normal_(0.0, bias_std, generator=generator)
