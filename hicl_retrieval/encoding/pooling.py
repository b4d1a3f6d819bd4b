"""A Hugging Face model with the pooling and normalisation that make its output a post vector: one module,
run by PyTorch (encoder.py) and exported whole to ONNX Runtime (onnx_runtime.py), so both compute the same.
Imported where torch already is (the encoder's constructor)."""

from __future__ import annotations

import torch


class Pooled(torch.nn.Module):
    """(input_ids, attention_mask) -> float32 vectors (posts, dim), unit length if `normalize`; `pooling` is
    ``pooler`` (the model's pooler output), ``cls`` or ``mean`` (over the mask)."""

    def __init__(self, model, pooling: str, normalize: bool) -> None:
        super().__init__()
        self.model, self.pooling, self.normalize = model, pooling, normalize
        self.train(model.training)

    def forward(self, input_ids, attention_mask):
        outputs = self.model(input_ids=input_ids, attention_mask=attention_mask)
        if self.pooling == "pooler":
            vectors = outputs.pooler_output
        elif self.pooling == "cls":
            vectors = outputs.last_hidden_state[:, 0]
        else:
            hidden = outputs.last_hidden_state.float()  # the mean summed in float32 whatever the model runs in
            weights = attention_mask.unsqueeze(-1).to(hidden.dtype)  # (posts, tokens, 1)
            vectors = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1e-9)
        vectors = vectors.float()
        return torch.nn.functional.normalize(vectors, dim=-1) if self.normalize else vectors
