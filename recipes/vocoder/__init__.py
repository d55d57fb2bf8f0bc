"""The neural vocoder recipe: its data, evaluation and speed benchmark."""
