"""Building a model directory: random weights of the upstream classes the yaml names, an LLM that ends
its utterances, the ONNX frontends, published in one atomic rename; and parameter counts without weights."""
from __future__ import annotations

import math
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

from ..loader import YAML_NAMES, build_yaml
from .frontends import require_onnx, write_campplus, write_speech_tokenizer
from .spec import BLANK_EN, SPEAKER, SPEECH_VOCAB, TOP_K, sizes
from .templates import yaml_text
from .tokenizer import write_qwen_tokenizer

# Chance per step (after the upstream minimum length) that the LLM ends the utterance. ras_sampling
# keeps the TOP_K=25 candidates (top_p=0.8 never bites on near-flat logits) and samples among them; an
# end-of-speech pick is always kept (it is never a "repeat"), so the per-step end chance is about this
# share and the mean length is 2 * text + 1 / share. v1's whisper tokenizer makes fewer text tokens per
# sentence than the tiny 400-entry BPE of v2, hence a larger share.
# Measured with upstream inference, seed 0 weights, 7 English/Chinese texts x 20 sampling seeds (speech
# tokens per text token, mean per text; tests/runtime/test_tiny.py checks a fixed-seed average lands in [2, 4]):
#   v2, share 0.10, 5/10/17/23/30/34/62 BPE tokens: 4.25 2.92 2.46 2.48 2.34 2.24 2.21 (all 2.70)
#   v1, share 0.15, 3/5/9/11/12/14/21 whisper tokens: 4.47 3.69 2.59 2.55 2.41 2.54 2.29 (all 2.93)
# Texts of only a few tokens land above 4: the tail of about 1 / share tokens dominates them.
EOS_SHARE: dict[int, float] = {1: 0.15, 2: 0.10}


def _qwen_config(s: dict[str, Any]) -> Any:
    from transformers import Qwen2Config

    # Qwen2-0.5B's settings except the sizes; tied embeddings as released. No sliding window (released:
    # configured but use_sliding_window false), which also spares a transformers warning per load.
    return Qwen2Config(vocab_size=s["vocab"], hidden_size=s["hidden"], intermediate_size=s["ff"],
                       num_hidden_layers=s["layers"], num_attention_heads=s["heads"],
                       num_key_value_heads=s["kv_heads"], tie_word_embeddings=True,
                       max_position_embeddings=32768, rope_theta=1000000.0, rms_norm_eps=1e-6,
                       use_sliding_window=False, sliding_window=None, max_window_layers=s["layers"])


def _bias_end_of_speech(decoder: Any, eos: int, share: float) -> None:
    """Near-flat speech-token logits plus a fixed end-of-speech logit (see EOS_SHARE).

    With the other top-k logits near 0, EOS gets share e^b / (e^b + TOP_K - 1) of the kept mass.
    Ids above EOS (Qwen2LM's two extra stop/fill ids) are pushed out of reach.
    """
    import torch

    with torch.no_grad():
        decoder.weight.mul_(0.01)  # logits differ by ~0.01: the top-k set still varies with context
        decoder.bias.zero_()
        decoder.weight[eos:].zero_()
        decoder.bias[eos] = math.log(share * (TOP_K - 1) / (1 - share))
        decoder.bias[eos + 1:] = -30.0


def _state_dict(module: Any, fp16: bool) -> dict[str, Any]:
    # Stored fp16 to halve the directory; loaders cast back to the module's dtype. Tied tensors (Qwen2's
    # embed_tokens / lm_head) stay one shared tensor, so torch.save writes them once (272 MB at full size).
    out: dict[str, Any] = {}
    done: dict[tuple[int, tuple[int, ...]], Any] = {}
    for k, v in module.state_dict().items():
        key = (v.data_ptr(), tuple(v.shape))
        if key not in done:
            done[key] = (v.half() if fp16 and v.is_floating_point() else v).detach().clone()
        out[k] = done[key]
    return out


def _build_into(out: Path, version: int, size: str, seed: int, fp16_weights: bool) -> None:
    import torch

    s = sizes(version, size)
    text = yaml_text(version, size)
    overrides: dict[str, str] = {}
    if version == 2:
        from transformers import Qwen2ForCausalLM

        blank = out / BLANK_EN
        blank.mkdir()
        write_qwen_tokenizer(blank)
        torch.manual_seed(seed)
        qwen = Qwen2ForCausalLM(_qwen_config(s))
        if fp16_weights:
            qwen = qwen.half()
        qwen.save_pretrained(str(blank))
        del qwen
        overrides["qwen_pretrain_path"] = str(blank)
    (out / YAML_NAMES[version]).write_text(text)
    torch.manual_seed(seed)  # the yaml-built modules draw their random init from here
    configs = build_yaml(text, overrides or None, YAML_NAMES[version])
    llm, flow, hift = configs["llm"], configs["flow"], configs["hift"]
    _bias_end_of_speech(llm.llm_decoder, llm.speech_token_size, EOS_SHARE[version])
    torch.save(_state_dict(llm, fp16_weights), out / "llm.pt")
    torch.save(_state_dict(flow, fp16_weights), out / "flow.pt")
    # Plain HiFTGenerator keys (no "generator." prefix; upstream strips one if present).
    torch.save(_state_dict(hift, fp16_weights), out / "hift.pt")
    del configs, llm, flow, hift
    gen = torch.Generator().manual_seed(seed + 7)
    torch.save({SPEAKER: {"embedding": torch.randn(1, 192, generator=gen)}}, out / "spk2info.pt")
    write_campplus(out / "campplus.onnx", seed)
    write_speech_tokenizer(out / f"speech_tokenizer_v{version}.onnx", seed,
                           stride=4 if version == 2 else 2, vocab=SPEECH_VOCAB[version])


def _publish_permissions(root: Path) -> None:
    # mkdtemp and safetensors create private (0700/0600) entries; a model dir is shared like any other.
    root.chmod(0o755)
    for p in root.rglob("*"):
        p.chmod(0o755 if p.is_dir() else 0o644)


def build(out_dir: str | os.PathLike[str], *, version: int = 2, size: str = "tiny", seed: int = 0,
          fp16_weights: bool = True) -> Path:
    """Writes a model directory into ``out_dir`` (absent or empty) and returns its path.

    Raises FileExistsError if ``out_dir`` is a file or a non-empty directory: nothing is overwritten;
    MissingExtra (an ImportError) if the ``onnx`` extra is not installed.
    """
    out = Path(out_dir)
    sizes(version, size)  # fail on bad arguments before touching the disk
    require_onnx()  # and on a missing extra, before a minute of building weights
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise FileExistsError(f"{out} exists and is not an empty directory; refusing to overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)
    # Built beside the target and renamed at the end: a crash never leaves a half directory.
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.building.", dir=out.parent))
    try:
        _build_into(tmp, version, size, seed, fp16_weights)
        _publish_permissions(tmp)
        if out.exists():
            out.rmdir()  # empty (checked above); fails rather than overwrite if something appeared since
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def param_counts(version: int = 2, size: str = "tiny") -> dict[str, int]:
    """Parameter counts of llm/flow/hift, built on the meta device: no weights, no disk, a few seconds."""
    import torch
    from hyperpyyaml import load_hyperpyyaml

    s = sizes(version, size)
    with torch.device("meta"):
        # llm: None skips the Qwen2Encoder, which could only be built from a saved Qwen2 folder.
        configs = load_hyperpyyaml(yaml_text(version, size), overrides={"llm": None} if version == 2 else None)
        counts = {k: sum(p.numel() for p in configs[k].parameters()) for k in ("flow", "hift")}
        if version == 2:
            from cosyvoice.llm.llm import Qwen2LM
            from transformers import Qwen2ForCausalLM

            qwen = Qwen2ForCausalLM(_qwen_config(s))
            rest = Qwen2LM(s["hidden"], s["hidden"], SPEECH_VOCAB[2], llm=torch.nn.Identity(), sampling=None)
            counts["llm"] = sum(p.numel() for p in qwen.parameters()) + sum(p.numel() for p in rest.parameters())
        else:
            counts["llm"] = sum(p.numel() for p in configs["llm"].parameters())
    return counts
