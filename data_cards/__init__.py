"""Dataset and model cards filled from manifests."""

from data_cards.cards import model_card

__all__ = ["model_card"]
