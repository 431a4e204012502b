"""DFR, Deep Feature Reconstruction: frozen EfficientNet stage features (`features`), a 1×1-conv
autoencoder through a PCA-sized bottleneck (`model`, width from `pca`), its squared error judged
against the OK training images (`normaliser`), and the whole image as one vector through its
principal components (`whole`, the image score's second half). Read `model.DFR.forward` first."""

from engine.models.dfr.features import StageFeatures
from engine.models.dfr.model import DFR, FeatureCAE
from engine.models.dfr.normaliser import ErrorNormaliser
from engine.models.dfr.pca import FeatureStats

__all__ = ["DFR", "ErrorNormaliser", "FeatureCAE", "FeatureStats", "StageFeatures"]
