"""Training on OK images: the training function, its image loader and the DFR feature cache."""
