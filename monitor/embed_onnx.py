"""The embedding model in ONNX Runtime, float or int8: exported once from the packaged torch model and cached.

sentence-transformers' own ONNX backend needs optimum-onnx, which requires transformers < 4.58 while the installed
sentence-transformers needs transformers 5; so the export is torch's and the quantisation ONNX Runtime's, and this
module does what the model's modules.json asks after the transformer: mean pooling, then unit length.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

FLOAT_FILE = "model.onnx"
INT8_FILE = "model-int8.onnx"
INPUTS = ("input_ids", "attention_mask", "token_type_ids")
OPSET = 17


def export(model_name: str, cache_dir: Path, *, int8: bool) -> Path:
    """The ONNX file of the model (its int8 form when asked) in cache_dir, made on first use and reused after."""
    folder = cache_dir / f"{Path(model_name).name}-{hashlib.sha256(model_name.encode()).hexdigest()[:12]}"
    folder.mkdir(parents=True, exist_ok=True)
    float_path = folder / FLOAT_FILE
    if not float_path.is_file():
        log.info("exporting %s to ONNX in %s (once)", model_name, folder)
        _publish(float_path, lambda staging: _export_float(model_name, staging))
    if not int8:
        return float_path
    int8_path = folder / INT8_FILE
    if not int8_path.is_file():
        from onnxruntime.quantization import QuantType, quantize_dynamic

        log.info("quantising the ONNX export of %s to int8 (once)", model_name)
        # Weights per channel, matrix products only: the word-embedding table and the rest stay float (cosine to the
        # float model about 0.99 on the evaluation texts, against 0.94 when every weight is one scale).
        _publish(
            int8_path,
            lambda staging: quantize_dynamic(
                float_path, staging, weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"]
            ),
        )
    return int8_path


def _publish(path: Path, write) -> None:
    """Write through a staging file renamed into place, so a reader never sees half a model."""
    handle, staging = tempfile.mkstemp(prefix=".staging-", suffix=".onnx", dir=path.parent)
    os.close(handle)
    try:
        write(Path(staging))
        os.chmod(staging, 0o644)
        os.replace(staging, path)
    finally:
        if os.path.exists(staging):
            os.unlink(staging)


def _export_float(model_name: str, path: Path) -> None:
    import torch
    from transformers import AutoModel, AutoTokenizer

    pooling = json.loads((Path(model_name) / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
    if not pooling.get("pooling_mode_mean_tokens"):
        raise ValueError(f"{model_name}: the ONNX backend runs mean-pooling models only")
    model = AutoModel.from_pretrained(model_name).eval()
    sample = AutoTokenizer.from_pretrained(model_name)(["an example sentence"], return_tensors="pt")
    names = [name for name in INPUTS if name in sample]

    class Transformer(torch.nn.Module):
        """The model called by keyword, as the exporter passes inputs by position."""

        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, *inputs):
            return self.model(**dict(zip(names, inputs))).last_hidden_state

    with torch.no_grad():
        torch.onnx.export(
            Transformer().eval(),
            tuple(sample[name] for name in names),
            str(path),
            dynamo=False,
            input_names=names,
            output_names=["last_hidden_state"],
            dynamic_axes={name: {0: "batch", 1: "tokens"} for name in [*names, "last_hidden_state"]},
            opset_version=OPSET,
        )


class OnnxEncoder:
    """Tokenise, run the exported transformer, mean-pool over real tokens, scale to unit length."""

    def __init__(self, model_file: Path, tokenizer_dir: str, *, max_tokens: int):
        import onnxruntime
        from transformers import AutoTokenizer

        self.session = onnxruntime.InferenceSession(str(model_file), providers=["CPUExecutionProvider"])
        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        self.inputs = {i.name for i in self.session.get_inputs()}
        self.max_tokens = max_tokens
        self.dimension = self.session.get_outputs()[0].shape[-1]

    def encode(self, texts: list[str], *, batch_size: int) -> np.ndarray:
        """Batches of similar length (as sentence-transformers does), so little padding is computed."""
        order = np.argsort([-len(t) for t in texts], kind="stable")
        vectors = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(texts), batch_size):
            chosen = order[start : start + batch_size]
            batch = self.tokenizer(
                [texts[i] for i in chosen], padding=True, truncation=True, max_length=self.max_tokens, return_tensors="np"
            )
            hidden = self.session.run(None, {k: v.astype(np.int64) for k, v in batch.items() if k in self.inputs})[0]
            mask = batch["attention_mask"][..., None].astype(np.float32)
            pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
            vectors[chosen] = pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)
        return vectors
