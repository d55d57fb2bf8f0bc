"""audiodiff: diffusion models for sound effects and jingles.

The stable public API::

    from audiodiff import AudioDiffusion, Audio, load_audio, save_audio
"""

from audiodiff.audio import load_audio, save_audio
from audiodiff.pipeline import Audio, AudioDiffusion

__version__ = "0.1.0"

__all__ = ["Audio", "AudioDiffusion", "__version__", "load_audio", "save_audio"]
