"""Dataset and model cards filled from manifests."""

from data_cards.cards import dataset_card, model_card, training_card

__all__ = ["dataset_card", "model_card", "training_card"]
