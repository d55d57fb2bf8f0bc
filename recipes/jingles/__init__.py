"""Generated melodies rendered with a SoundFont as a folder dataset."""
