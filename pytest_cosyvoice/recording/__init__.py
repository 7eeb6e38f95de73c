"""Recording the engine's calls: `cosy_tts`'s call lifecycle, thread and token attribution, warning capture."""
