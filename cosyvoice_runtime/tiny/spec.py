"""What the builder makes: each version's vocabularies, sample rate and sampling, and the model sizes."""
from __future__ import annotations

from typing import Any

from ..loader import BLANK_EN as BLANK_EN  # re-exported: the builder writes the folder the loader reads

SPEECH_VOCAB = {1: 4096, 2: 6561}
SAMPLE_RATE = {1: 22050, 2: 24000}
SPEAKER = "tiny_speaker"
# The whisper-style encoding upstream's get_tokenizer builds (multilingual_zh_ja_yue_char_del plus its
# specials) has 60510 ids, and Chinese text maps above 51866 (the released v1 value), so the v1 text
# embedding is sized to cover every id the tokenizer can produce.
V1_TEXT_VOCAB = 60515
# ras_sampling's candidate count, written into the yaml; the end-of-speech bias (builder.EOS_SHARE) is
# computed from it.
TOP_K = 25

SIZES: dict[tuple[int, str], dict[str, Any]] = {
    # The flow encoder stays at 512: PreLookaheadLayer/Upsample1D hard-code 512 channels.
    (2, "tiny"): dict(hidden=64, layers=2, heads=4, kv_heads=2, ff=128, vocab=512,
                      enc_heads=8, enc_ff=64, enc_blocks=1, dec_channels=64, dec_head_dim=32, dec_blocks=1,
                      dec_mid=1, dec_heads=2, hift_channels=32),
    # Between the two, for timings where the flow's share matters (e.g. benchmarks/flow_context.py):
    # a 4-layer 256-wide LLM, 3 encoder blocks, a decoder with 4 mid blocks of 2 transformer blocks.
    (2, "mid"): dict(hidden=256, layers=4, heads=4, kv_heads=2, ff=1024, vocab=512,
                     enc_heads=8, enc_ff=1024, enc_blocks=3, dec_channels=128, dec_head_dim=32, dec_blocks=2,
                     dec_mid=4, dec_heads=4, hift_channels=128),
    # The released CosyVoice2-0.5B shapes.
    (2, "full"): dict(hidden=896, layers=24, heads=14, kv_heads=2, ff=4864, vocab=151936,
                      enc_heads=8, enc_ff=2048, enc_blocks=6, dec_channels=256, dec_head_dim=64, dec_blocks=4,
                      dec_mid=12, dec_heads=8, hift_channels=512),
    (1, "tiny"): dict(text_dim=32, llm_dim=64, llm_heads=4, llm_ff=128, llm_blocks=2, flow_dim=64,
                      enc_heads=2, enc_ff=64, enc_blocks=1, dec_channels=64, dec_head_dim=32, dec_blocks=1,
                      dec_mid=1, dec_heads=2, hift_channels=32),
}


def sizes(version: int, size: str) -> dict[str, Any]:
    """The sizes of one (version, size); ValueError naming the known ones when there is none."""
    if version not in (1, 2):
        raise ValueError(f"version={version!r}: the builder makes v1 or v2 directories")
    s = SIZES.get((version, size))
    if s is None:
        known = ", ".join(f"v{v} {n}" for v, n in sorted(SIZES))
        raise ValueError(f"no size {size!r} for version {version} (known: {known})")
    return s
