"""Recurrent students: sliding-window and gated-linear-attention decoders, conversion, EMR reading, training."""
