"""Generation: one pipeline (generate) from a prompt to sampled codes to audio, handed to a sink (files, chunks for
streaming, memory for continue_audio); takes, sampling, precision.
"""
