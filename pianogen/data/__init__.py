"""Everything between audio files on disk and LongTensor[B, K, T] batches."""
