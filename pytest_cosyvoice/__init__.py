"""pytest-cosyvoice: a pytest plugin and regression harness for CosyVoice streaming TTS."""
